use paranix::prelude::*;

#[paranix::host(
    instance_type = "t3.micro",
    configuration = "tests/ui/hosts/web.nix",
    health_checks(http(port = 0, path = "/"), http(path = "health"), ping("10.0.0.1"), http(port = 80, path = "/fact\r\nX-Evil: 1")),
    nixos(networking.hostName = "web", networking.hostName = "web2", services.x.addr = public_ipv4, services.x.y = self.nope),
)]
struct Web {
    ami: Output<ImageId>,
    key_name: Output<KeyName>,
    security_groups: Vec<Output<SecurityGroupId>>,
}

fn main() {}
