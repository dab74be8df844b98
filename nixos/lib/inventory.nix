# Lookups over the inventory (nixos/fleet.nix), with builtins only so that everything built on
# them evaluates without nixpkgs: `nix-instantiate --eval --strict --json` on any machine.
{fleet}: let
  inherit (builtins) attrNames concatMap elem filter head listToAttrs map match toJSON;

  roles = ["k3s-server" "k3s-agent" "pulsar" "postgres" "monitoring" "ci"];

  # Every host, with its environment and its size spelled out.
  hostList = concatMap (env:
    map (host:
      host
      // {
        inherit env;
        spec = fleet.sizes.${host.size};
      })
    fleet.environments.${env}.hosts) (attrNames fleet.environments);

  hosts = listToAttrs (map (host: {
      inherit (host) name;
      value = host;
    })
    hostList);

  envHosts = env: filter (host: host.env == env) hostList;
  hasRole = role: host: elem role host.roles;
  hostsOf = env: role: filter (hasRole role) (envHosts env);
  k3sHosts = env: filter (host: hasRole "k3s-server" host || hasRole "k3s-agent" host) (envHosts env);

  # "10.20.0.31" → [10 20 0 31] as integers.
  octets = address: let
    parts = match "([0-9]+)\\.([0-9]+)\\.([0-9]+)\\.([0-9]+)" address;
  in
    if parts == null
    then throw "not an IPv4 address: ${toJSON address}"
    else map builtins.fromJSON parts;
  lastOctet = address: builtins.elemAt (octets address) 3;
in {
  inherit roles hostList hosts envHosts hasRole hostsOf k3sHosts octets lastOctet;
  environments = attrNames fleet.environments;
  environment = env: fleet.environments.${env};

  # The canary alone first, then every other host in inventory order.
  rolloutOrder = env: let
    inherit (fleet.environments.${env}) canary;
  in
    [canary] ++ filter (name: name != canary) (map (host: host.name) (envHosts env));

  # The k3s server that initialises the embedded etcd: the first server in inventory order.
  clusterInit = env: (head (hostsOf env "k3s-server")).name;
}
