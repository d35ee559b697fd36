//! The smallest host: an instance type, a configuration and the three references.

use paranix::prelude::*;

#[paranix::host(instance_type = "t3.micro", configuration = "tests/ui/hosts/web.nix")]
struct Web {
    ami: Output<ImageId>,
    key_name: Output<KeyName>,
    security_groups: Vec<Output<SecurityGroupId>>,
}

fn main() {
    let mut stack = Stack::new("web");
    let key = stack.add(ec2::KeyPair::generate("deployer"));
    let group = stack.add(ec2::SecurityGroup::new("web").description("web"));
    let web = stack.add_host(Web {
        ami: Output::of(&paranix::address::Address::managed("aws_ami", "nixos"), "id"),
        key_name: key.key_name(),
        security_groups: vec![group.id()],
    });
    assert_eq!(web.instance().address().to_string(), "aws_instance.web");
    assert_eq!(web.system().address().to_string(), "nixos_system.web");
    assert_eq!(web.deployment().address().to_string(), "nixos_deployment.web");
    assert_eq!(<Web as paranix::host::Host>::NAME, "web");
}
