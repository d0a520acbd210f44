#include "keyhold/http/server.hpp"
