#pragma once
// Placeholder: the audit log (issue 6).
