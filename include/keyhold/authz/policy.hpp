#pragma once
// Placeholder: the policy (issue 6).
