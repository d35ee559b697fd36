use paranix::prelude::*;

#[paranix::host(instance_type = "t3.micro", configuration = "tests/ui/hosts/web.nix", host_key = pinned)]
struct Web {
    ami: Output<ImageId>,
    security_groups: Vec<Output<SecurityGroupId>>,
}

#[paranix::host(instance_type = "t3.micro", configuration = "tests/ui/hosts/web.nix")]
fn not_a_struct() {}

fn main() {
    not_a_struct();
}
