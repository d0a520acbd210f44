#include "arguments.hpp"

namespace po = boost::program_options;

namespace keyhold::cli {

po::variables_map parse_arguments(const std::vector<std::string>& args, const po::options_description& options,
                                  const std::vector<std::string>& positionals) {
  po::positional_options_description positional;
  for (const std::string& name : positionals) positional.add(name.c_str(), 1);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(options).positional(positional).run(), vm);
  // Positionals are named like options inside Boost; say "missing NAME", not
  // "the option '--name' is required".
  for (const std::string& name : positionals) {
    if (vm.count(name) == 0 && options.find_nothrow(name, false) != nullptr &&
        options.find(name, false).semantic()->is_required()) {
      std::string upper;
      for (char c : name) upper += static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
      throw po::error("missing " + upper);
    }
  }
  po::notify(vm);
  return vm;
}

}  // namespace keyhold::cli
