#pragma once
// Placeholder: the HTTPS server (issue 6).
