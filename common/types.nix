# Option types shared by paranix's modules: `import ./types.nix { inherit lib; }`.
{ lib }:
{
  # One OpenSSH public key line and nothing else: no `command=`/`from=` options in front (a forced command would
  # answer for the account instead of a shell), no second line.
  publicKey = lib.types.strMatching "(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh[.]com|sk-ecdsa-sha2-nistp256@openssh[.]com) [A-Za-z0-9+/]+={0,3}( [^\n]*)?";
}
