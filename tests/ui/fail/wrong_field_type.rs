// A host struct whose `ami` field holds an ARN: reported at the field's type.
use paranix::prelude::*;

#[paranix::host(instance_type = "t3.micro", configuration = "tests/ui/hosts/web.nix")]
struct Web {
    ami: Output<Arn>,
    key_name: Output<KeyName>,
    security_groups: Vec<Output<SecurityGroupId>>,
}

fn main() {}
