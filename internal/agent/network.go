package agent

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/vishvananda/netlink"
)

// DefaultLinkName is the interface setup-network creates, as on EKS nodes.
const DefaultLinkName = "pod-id-link0"

// DefaultAddresses are the link-local addresses SDKs are pointed at.
var DefaultAddresses = []string{"169.254.170.23/32", "fd00:ec2::23/128"}

// Link kinds SetupNetwork may use, best first.
const (
	LinkDummy    = "dummy"
	LinkBridge   = "bridge" // a bridge with no ports, where dummy is missing
	LinkLoopback = "lo"     // last resort: the loopback interface itself
)

// NetworkResult says what SetupNetwork did.
type NetworkResult struct {
	Link    string // interface name
	Kind    string // LinkDummy, LinkBridge or LinkLoopback
	Created bool   // false: the link was there already
	Notes   []string
}

// ifaNoDAD is IFA_F_NODAD: the IPv6 address is ours alone, so skip duplicate
// address detection (which would hold it "tentative" and unbindable).
const ifaNoDAD = 0x02

// NetworkConfig says what SetupNetwork sets up. Zero fields take defaults.
type NetworkConfig struct {
	Link      string   // DefaultLinkName
	Addresses []string // DefaultAddresses
	// Kinds are tried in order when the link does not exist (default:
	// dummy, bridge, lo).
	Kinds []string
}

// SetupNetwork puts the addresses on a dedicated interface in the network
// namespace of h (nil: the caller's). It prefers a dummy link, as EKS nodes
// use; kernels without the dummy driver get a port-less bridge, and if that
// fails too, the addresses go on lo. It is idempotent.
func SetupNetwork(h *netlink.Handle, cfg NetworkConfig) (*NetworkResult, error) {
	if cfg.Link == "" {
		cfg.Link = DefaultLinkName
	}
	if len(cfg.Addresses) == 0 {
		cfg.Addresses = DefaultAddresses
	}
	if len(cfg.Kinds) == 0 {
		cfg.Kinds = []string{LinkDummy, LinkBridge, LinkLoopback}
	}
	if h == nil {
		var err error
		if h, err = netlink.NewHandle(); err != nil {
			return nil, fmt.Errorf("setup-network: netlink: %w", err)
		}
		defer h.Close()
	}
	parsed := make([]*netlink.Addr, 0, len(cfg.Addresses))
	for _, s := range cfg.Addresses {
		a, err := netlink.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("setup-network: address %q: %w", s, err)
		}
		if a.IP.To4() == nil {
			a.Flags |= ifaNoDAD
		}
		parsed = append(parsed, a)
	}

	res := &NetworkResult{Link: cfg.Link}
	// Local delivery needs lo up (it is on nodes; not in a fresh namespace).
	lo, err := h.LinkByName("lo")
	if err != nil {
		return nil, wrapPerm("find lo", err)
	}
	if lo.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(lo); err != nil {
			return nil, wrapPerm("bring lo up", err)
		}
	}

	link, err := h.LinkByName(cfg.Link)
	switch {
	case err == nil:
		res.Kind = link.Type()
		res.Notes = append(res.Notes, fmt.Sprintf("link %s (%s) exists; reusing it", cfg.Link, link.Type()))
	case errors.As(err, new(netlink.LinkNotFoundError)):
		if link, res.Kind, err = createLink(h, cfg.Link, cfg.Kinds, res); err != nil {
			return nil, err
		}
		res.Link = link.Attrs().Name
		res.Created = res.Kind != LinkLoopback
	default:
		return nil, wrapPerm("look up "+cfg.Link, err)
	}

	if err := h.LinkSetUp(link); err != nil {
		return nil, wrapPerm("bring "+res.Link+" up", err)
	}
	for _, a := range parsed {
		if err := h.AddrReplace(link, a); err != nil {
			return nil, wrapPerm(fmt.Sprintf("add %s to %s", a.IPNet, res.Link), err)
		}
	}
	return res, nil
}

func createLink(h *netlink.Handle, name string, kinds []string, res *NetworkResult) (netlink.Link, string, error) {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	var errs []error
	for _, kind := range kinds {
		var err error
		switch kind {
		case LinkDummy:
			err = h.LinkAdd(&netlink.Dummy{LinkAttrs: attrs})
		case LinkBridge:
			err = h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs})
		case LinkLoopback:
			l, err := h.LinkByName("lo")
			return l, LinkLoopback, wrapPerm("find lo", err)
		default:
			return nil, "", fmt.Errorf("setup-network: unknown link kind %q (want dummy, bridge or lo)", kind)
		}
		if err == nil {
			l, err := h.LinkByName(name)
			return l, kind, wrapPerm("find "+name, err)
		}
		if isPerm(err) {
			return nil, "", wrapPerm("create "+kind+" link "+name, err)
		}
		res.Notes = append(res.Notes, fmt.Sprintf("%s link unavailable: %v", kind, err))
		errs = append(errs, fmt.Errorf("%s: %w", kind, err))
	}
	return nil, "", fmt.Errorf("setup-network: could not create %s: %w", name, errors.Join(errs...))
}

func isPerm(err error) bool {
	return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES)
}

func wrapPerm(what string, err error) error {
	if err == nil {
		return nil
	}
	if isPerm(err) {
		return fmt.Errorf("setup-network: %s: %w (this needs CAP_NET_ADMIN: run as root or add NET_ADMIN to the init container's capabilities)", what, err)
	}
	return fmt.Errorf("setup-network: %s: %w", what, err)
}
