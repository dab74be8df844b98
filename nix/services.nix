# The services this flake builds and ships: pure data, one entry per crate under services/.
# flake.nix derives every per-service output from this file (a package, a layered image, a
# streamed image); dev/nix_services_check.py compares it with the Cargo workspace, so a new
# service crate without an entry here fails CI.
#
#   crate   Cargo package name (comptoir-<folder>)
#   binary  the [[bin]] the image runs
#   port    the HTTP port the service listens on inside its container
{
  analytics = {
    crate = "comptoir-analytics";
    binary = "comptoir-analytics";
    port = 8080;
  };
  catalog = {
    crate = "comptoir-catalog";
    binary = "comptoir-catalog";
    port = 8080;
  };
  gateway = {
    crate = "comptoir-gateway";
    binary = "comptoir-gateway";
    port = 8080;
  };
  identity = {
    crate = "comptoir-identity";
    binary = "comptoir-identity";
    port = 8080;
  };
  inventory = {
    crate = "comptoir-inventory";
    binary = "comptoir-inventory";
    port = 8080;
  };
  notifications = {
    crate = "comptoir-notifications";
    binary = "comptoir-notifications";
    port = 8080;
  };
  orders = {
    crate = "comptoir-orders";
    binary = "comptoir-orders";
    port = 8080;
  };
  payments = {
    crate = "comptoir-payments";
    binary = "comptoir-payments";
    port = 8080;
  };
}
