//! IP filters: which flows the stack serves at all.
//!
//! Rules match a packet's source and destination against CIDRs (IPv4 or IPv6); the first
//! matching rule decides, otherwise the default action does. An optional hook sees every packet
//! the rules allowed and may still refuse it. Refused packets are dropped silently (no RST, no
//! ICMP error) and counted as `drops.filtered`.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use smoltcp::wire::{IpAddress, IpCidr};

/// The transport protocol of a packet, as the filter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP or ICMPv6.
    Icmp,
}

/// What the filter is asked about: one packet's addresses and ports (0 for ICMP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowInfo {
    /// Transport protocol.
    pub protocol: Protocol,
    /// Source address (the device side).
    pub src: IpAddress,
    /// Destination address.
    pub dst: IpAddress,
    /// Source port (0 for ICMP).
    pub src_port: u16,
    /// Destination port (0 for ICMP).
    pub dst_port: u16,
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterAction {
    /// Serve the packet.
    Allow,
    /// Drop the packet (counted as `drops.filtered`).
    Deny,
}

/// One rule: `action` applies when both given CIDRs match (`None` matches anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterRule {
    /// What to do on a match.
    pub action: FilterAction,
    /// Source CIDR, or `None` for any source.
    pub src: Option<IpCidr>,
    /// Destination CIDR, or `None` for any destination.
    pub dst: Option<IpCidr>,
}

impl FilterRule {
    fn matches(&self, flow: &FlowInfo) -> bool {
        self.src.is_none_or(|c| c.contains_addr(&flow.src))
            && self.dst.is_none_or(|c| c.contains_addr(&flow.dst))
    }
}

/// A predicate over flows, shared by clones of the configuration.
pub type FilterHook = Arc<dyn Fn(&FlowInfo) -> bool + Send + Sync>;

/// Allow/deny rules plus an optional hook. The default filter allows everything.
#[derive(Clone)]
pub struct IpFilter {
    rules: Vec<FilterRule>,
    default: FilterAction,
    hook: Option<FilterHook>,
}

impl Default for IpFilter {
    fn default() -> Self {
        IpFilter {
            rules: Vec::new(),
            default: FilterAction::Allow,
            hook: None,
        }
    }
}

impl fmt::Debug for IpFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpFilter")
            .field("rules", &self.rules)
            .field("default", &self.default)
            .field("hook", &self.hook.as_ref().map(|_| "Fn(&FlowInfo) -> bool"))
            .finish()
    }
}

impl IpFilter {
    /// A filter that allows everything (add `deny` rules), or denies everything (add `allow`
    /// rules), when no rule matches.
    pub fn new(default: FilterAction) -> Self {
        IpFilter {
            default,
            ..Default::default()
        }
    }

    /// Appends a rule; rules are tried in the order they were added.
    #[must_use]
    pub fn rule(mut self, rule: FilterRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Appends a rule allowing `src` → `dst` (`None` = any).
    #[must_use]
    pub fn allow(self, src: Option<IpCidr>, dst: Option<IpCidr>) -> Self {
        self.rule(FilterRule {
            action: FilterAction::Allow,
            src,
            dst,
        })
    }

    /// Appends a rule denying `src` → `dst` (`None` = any).
    #[must_use]
    pub fn deny(self, src: Option<IpCidr>, dst: Option<IpCidr>) -> Self {
        self.rule(FilterRule {
            action: FilterAction::Deny,
            src,
            dst,
        })
    }

    /// Sets a hook consulted for every packet the rules allow; returning `false` drops it.
    #[must_use]
    pub fn hook(mut self, hook: impl Fn(&FlowInfo) -> bool + Send + Sync + 'static) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// Whether this filter can refuse anything (lets the packet path skip it entirely).
    pub(crate) fn is_open(&self) -> bool {
        self.rules.is_empty() && self.default == FilterAction::Allow && self.hook.is_none()
    }

    /// Whether `flow` may pass.
    pub fn allows(&self, flow: &FlowInfo) -> bool {
        let action = self
            .rules
            .iter()
            .find(|r| r.matches(flow))
            .map_or(self.default, |r| r.action);
        action == FilterAction::Allow && self.hook.as_ref().is_none_or(|h| h(flow))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{Ipv4Address, Ipv4Cidr, Ipv6Address, Ipv6Cidr};

    fn flow(dst: IpAddress) -> FlowInfo {
        FlowInfo {
            protocol: Protocol::Udp,
            src: IpAddress::Ipv4(Ipv4Address::new(198, 18, 0, 1)),
            dst,
            src_port: 1000,
            dst_port: 53,
        }
    }

    #[test]
    fn first_matching_rule_wins_and_default_applies_otherwise() {
        let blocked = IpCidr::Ipv4(Ipv4Cidr::new(Ipv4Address::new(198, 19, 0, 0), 16));
        let f = IpFilter::default().deny(None, Some(blocked));
        assert!(!f.allows(&flow(Ipv4Address::new(198, 19, 1, 1).into())));
        assert!(f.allows(&flow(Ipv4Address::new(198, 18, 1, 1).into())));

        let v6 = IpCidr::Ipv6(Ipv6Cidr::new(
            Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 0),
            64,
        ));
        let f = IpFilter::new(FilterAction::Deny).allow(None, Some(v6));
        assert!(f.allows(&flow(Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 9).into())));
        assert!(!f.allows(&flow(Ipv4Address::new(198, 18, 1, 1).into())));
    }

    #[test]
    fn hook_can_refuse_what_rules_allow() {
        let f = IpFilter::default().hook(|flow| flow.dst_port != 53);
        assert!(!f.allows(&flow(Ipv4Address::new(1, 1, 1, 1).into())));
        assert!(!f.is_open());
        assert!(IpFilter::default().is_open());
    }
}
