use paranix::prelude::*;

#[paranix::host(instance_type = "t3.micro", configuration = "tests/ui/hosts/wbe.nix")]
struct Web {
    ami: Output<ImageId>,
    key_name: Output<KeyName>,
    security_groups: Vec<Output<SecurityGroupId>>,
}

fn main() {}
