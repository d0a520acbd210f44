#pragma once
// Parsing a command's own arguments with Boost.Program_options.

#include <boost/program_options.hpp>

#include <string>
#include <vector>

namespace keyhold::cli {

// Parses args against options, with the named positionals in order (each
// taken once). Unknown options and extra positionals are usage errors.
boost::program_options::variables_map parse_arguments(const std::vector<std::string>& args,
                                                      const boost::program_options::options_description& options,
                                                      const std::vector<std::string>& positionals);

}  // namespace keyhold::cli
