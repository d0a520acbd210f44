#include "keyhold/authz/policy.hpp"
