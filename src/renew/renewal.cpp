#include "keyhold/renew/renewal.hpp"
