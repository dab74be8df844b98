# The service graph: who may talk to whom. Pure data, read by the k3s NetworkPolicies
# (nixos/lib/manifests.nix), the host firewalls (nixos/lib/firewall.nix) and the checks that
# both allow exactly these edges and nothing more (dev/check-fleet.sh).
{
  # Plain-HTTP calls between services inside the cluster: caller → callees, on the callee's
  # service port. The gateway proxies every public route; orders verifies shoppers' tokens
  # against identity's JWKS (analytics too, for signed-in shoppers' clicks); notifications
  # resolves addresses through identity's /internal.
  calls = {
    gateway = ["analytics" "catalog" "identity" "inventory" "notifications" "orders" "payments"];
    orders = ["identity"];
    analytics = ["identity"];
    notifications = ["identity"];
  };

  # What each service reaches outside the cluster: `postgres` (the Patroni hosts, its own
  # database), `pulsar` (the brokers, TLS) and `smtp` (the environment's mail relay).
  # Every service has an entry, even an empty one.
  needs = {
    analytics = ["postgres" "pulsar"];
    catalog = ["postgres" "pulsar"];
    gateway = [];
    identity = ["postgres" "pulsar"];
    inventory = ["postgres" "pulsar"];
    notifications = ["postgres" "pulsar" "smtp"];
    orders = ["postgres" "pulsar"];
    payments = ["postgres" "pulsar"];
  };

  # The only services the ingress forwards to.
  public = ["gateway"];
}
