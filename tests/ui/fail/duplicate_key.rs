use paranix::prelude::*;

#[paranix::host(instance_type = "t3.micro", configuration = "tests/ui/hosts/web.nix", instance_type = "t3.small")]
struct Web {
    ami: Output<ImageId>,
    key_name: Output<KeyName>,
    security_groups: Vec<Output<SecurityGroupId>>,
}

fn main() {}
