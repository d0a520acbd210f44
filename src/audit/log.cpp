#include "keyhold/audit/log.hpp"
