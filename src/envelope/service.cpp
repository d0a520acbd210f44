#include "keyhold/envelope/service.hpp"
