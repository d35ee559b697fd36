//! Test support for the paranix integration tests (`tests/it`).

/// A local AWS (moto plus paranix's extensions) for tests that drive the real SDK clients: see
/// [`moto::MotoServer`].
pub mod moto;

/// Real SSH targets (an sshd in its own mount namespace with its own `/nix`, `/run`, `/root` and `/etc/nix`
/// each) and fake NixOS systems, for testing deploys without NixOS: see [`rig::Rig`].
pub mod rig;

/// A latency-injecting loopback proxy in front of the AWS emulator.
pub mod proxy;
