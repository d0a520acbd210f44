// keyhold renew (being built: issue 7)

#include "cli.hpp"

namespace keyhold::cli {

std::vector<Command> renew_commands() { return {}; }

}  // namespace keyhold::cli
