# Services a paranix host can run. Each one is off until its `paranix.services.<name>.enable` is set.
{
  imports = [ ./printerfacts.nix ];
}
