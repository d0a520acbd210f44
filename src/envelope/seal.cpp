#include "keyhold/envelope/seal.hpp"
