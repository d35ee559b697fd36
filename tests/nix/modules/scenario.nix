# One module-logic evaluation for the tests (tests/it/nix_modules.rs), from command-line strings:
#
#   nix-instantiate --eval --strict --json tests/nix/modules/scenario.nix \
#     --argstr libPath /path/to/nixpkgs/lib --argstr configuration "$PWD/examples/printerfacts/host.nix" \
#     --argstr optionsFile options.json [--argstr image 1] [--argstr system aarch64-linux] [--argstr extraFile x.json]
#
# optionsFile: the JSON the Rust code writes for a system (its `options` field is used, as nix/eval.nix does);
# extraFile: more configuration as JSON, merged as one more module (test knobs such as `ec2.efi`).
{
  libPath,
  configuration,
  optionsFile ? "",
  image ? "",
  system ? "x86_64-linux",
  extraFile ? "",
}:
let
  readJSON = file: if file == "" then { } else builtins.fromJSON (builtins.readFile file);
in
(import ./eval.nix {
  lib = import libPath;
  inherit configuration system;
  image = image != "";
  options = (readJSON optionsFile).options or { };
  extraModules = [
    {
      _file = "extraFile";
      config = readJSON extraFile;
    }
  ];
}).report
