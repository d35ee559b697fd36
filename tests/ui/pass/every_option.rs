//! Every argument #[host] takes, and every field role.

use paranix::host::Host;
use paranix::prelude::*;

/// A Graviton host with a pinned key, both kinds of health check and NixOS options of every kind.
#[paranix::host(
    name = "api-1",
    instance_type = "m7g.large",
    root_volume(size_gib = 100, volume_type = "io2"),
    configuration = "tests/ui/hosts/web.nix",
    host_key = pinned,
    health_checks(
        http(port = 8080, path = "/healthz"),
        command("systemctl", "is-active", "api.service"),
    ),
    nixos(
        networking.hostName = "api-1",
        services.api.port = 8080,
        services.api.enable = true,
        services.nginx.virtualHosts."api.example.com".serverAliases = public_dns,
        services.api.instance = instance_id,
        services.api.listen = private_ip,
        paranix.services.printerfacts.domain = public_ip,
        services.api.release = self.release,
        services.api.previousRelease = self.release,
        services.api.image = self.ami,
    ),
    tags(Project = "api", "cost-centre" = "42"),
)]
pub struct Api {
    pub ami: Output<ImageId>,
    pub key_name: Output<KeyName>,
    pub security_groups: Vec<Output<SecurityGroupId>>,
    pub private_key: Output<String>,
    pub host_key: Value<PublicKey>,
    pub release: String,
}

fn main() {
    let mut stack = Stack::new("api");
    let key = stack.add(ec2::KeyPair::generate("deployer"));
    let group = stack.add(ec2::SecurityGroup::new("api").description("api"));
    let api = Api {
        ami: Output::of(&paranix::address::Address::managed("aws_ami", "nixos"), "id"),
        key_name: key.key_name(),
        security_groups: vec![group.id()],
        private_key: key.private_key(),
        host_key: PublicKey::new("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHpx5E2Rj9PzeHk9U2LqwH4HTx3HToVcqJHb7oNW7v3v").into(),
        release: "2026.11".to_owned(),
    };
    // Per-use adjustments on top of what the attribute declared.
    let spec = api.spec().ssh_address("10.0.0.7").ssh_port(2222);
    assert_eq!(spec.host_name(), "api-1");
    let handle = stack.add_host(spec);
    assert_eq!(handle.deployment().address().to_string(), "nixos_deployment.api-1");
    let _: Output<InstanceId> = handle.instance_id();
    let _: Output<HostAddress> = handle.public_ip();
    let _: Output<StorePath> = handle.toplevel();
}
