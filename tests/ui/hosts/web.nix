# A host configuration for the #[host] UI tests (tests/ui.rs): it only has to exist; nothing evaluates it.
{ ... }:
{
  system.stateVersion = "26.05";
}
