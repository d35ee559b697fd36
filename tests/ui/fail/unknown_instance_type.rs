use paranix::prelude::*;

#[paranix::host(instance_type = "t3.mirco", configuration = "tests/ui/hosts/web.nix")]
struct Web {
    ami: Output<ImageId>,
    key_name: Output<KeyName>,
    security_groups: Vec<Output<SecurityGroupId>>,
}

#[paranix::host(instance_type = "z9.large", configuration = "tests/ui/hosts/web.nix")]
struct Db {
    ami: Output<ImageId>,
    key_name: Output<KeyName>,
    security_groups: Vec<Output<SecurityGroupId>>,
}

fn main() {}
