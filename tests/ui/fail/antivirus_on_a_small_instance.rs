use paranix::prelude::*;

// clamd needs more than 1 GiB: on a t3.micro every switch would end with the daemon killed and a rollback.
#[paranix::host(
    instance_type = "t3.micro",
    configuration = "tests/ui/hosts/web.nix",
    nixos(paranix.antivirus.enable = true)
)]
struct Web {
    ami: Output<ImageId>,
    key_name: Output<KeyName>,
    security_groups: Vec<Output<SecurityGroupId>>,
}

// The same on an instance with 2 GiB compiles.
#[paranix::host(
    instance_type = "t3.small",
    configuration = "tests/ui/hosts/web.nix",
    nixos(paranix.antivirus.enable = true)
)]
struct Scanner {
    ami: Output<ImageId>,
    key_name: Output<KeyName>,
    security_groups: Vec<Output<SecurityGroupId>>,
}

fn main() {}
