use paranix::prelude::*;

#[paranix::host(instance_type = "t3.micro", configuration = "tests/ui/hosts/web.nix", root_volume(size_gib = 0))]
struct Web {
    ami: Output<ImageId>,
    key_name: Output<KeyName>,
    security_groups: Vec<Output<SecurityGroupId>>,
}

#[paranix::host(
    instance_type = "t3.micro",
    configuration = "tests/ui/hosts/web.nix",
    root_volume(size_gib = 500, volume_type = "st1")
)]
struct Logs {
    ami: Output<ImageId>,
    key_name: Output<KeyName>,
    security_groups: Vec<Output<SecurityGroupId>>,
}

fn main() {}
