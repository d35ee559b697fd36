//! Test support for the paranix integration tests (`tests/it`).

/// A local AWS (moto plus paranix's extensions) for tests that drive the real SDK clients: see
/// [`moto::MotoServer`].
pub mod moto;

/// Real SSH targets (an sshd in its own mount namespace with its own `/nix`, `/run`, `/root` and `/etc/nix`
/// each) and fake NixOS systems, for testing deploys without NixOS: see [`rig::Rig`].
pub mod rig;

/// A latency-injecting loopback proxy in front of the AWS emulator.
pub mod proxy;

/// A loopback port nobody listens on right now: bind port 0, read the port, close. (Another process may take
/// it before the caller binds it; the servers here start within milliseconds.)
pub fn free_port() -> u16 {
    std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("find a free loopback port")
        .port()
}
