#include "keyhold/envelope/ciphertext.hpp"
