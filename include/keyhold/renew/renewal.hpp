#pragma once
// keyhold renew: the renewal file, when a certificate is due, and writing a
// renewed set of files crash-safely. (Being built: see issue 7.)

namespace keyhold::renew {}  // namespace keyhold::renew
