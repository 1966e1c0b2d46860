//! Overlay address allocation.
//!
//! Overlay addresses are a pure function of the organization and of an index the log alone
//! decides: IPv4 from 100.64.0.0/10 in order (100.64.0.1, 100.64.0.2, …), IPv6 in the
//! organization's own ULA /48 (`fd` + 40 bits of SHA-256 of the org id, as RFC 4193 asks) with
//! the same index as interface id. A removed device's index is handed out again once it has
//! rested for a quarantine (see `registration::next_address`); registrations are serialized
//! by the `ipam:<org>` stream's expected revision.

use std::net::{Ipv4Addr, Ipv6Addr};

use sha2::{Digest, Sha256};

/// Registrations an organization can make: 100.64.0.0/10 minus its first and last address.
pub const MAX_ALLOCATIONS: u64 = (1 << 22) - 2;

/// The IPv4 address of the organization's `index`-th registration (0-based).
pub fn ipv4_for(index: u64) -> Option<Ipv4Addr> {
    if index >= MAX_ALLOCATIONS {
        return None;
    }
    let base = u32::from(Ipv4Addr::new(100, 64, 0, 0));
    Some(Ipv4Addr::from(base + 1 + index as u32))
}

/// The IPv6 address of the organization's `index`-th registration: its ULA /48, subnet 0,
/// interface id `index + 1`.
pub fn ipv6_for(org_id: &str, index: u64) -> Ipv6Addr {
    let digest = Sha256::digest(format!("quickztna ula {org_id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes[0] = 0xfd;
    bytes[1..6].copy_from_slice(&digest[..5]);
    bytes[8..16].copy_from_slice(&(index + 1).to_be_bytes());
    Ipv6Addr::from(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_addresses_run_through_100_64_0_0_slash_10_without_its_ends() {
        assert_eq!(ipv4_for(0), Some(Ipv4Addr::new(100, 64, 0, 1)));
        assert_eq!(
            ipv4_for(MAX_ALLOCATIONS - 1),
            Some(Ipv4Addr::new(100, 127, 255, 254))
        );
        assert_eq!(ipv4_for(MAX_ALLOCATIONS), None);
    }

    #[test]
    fn each_organization_has_its_own_ula_prefix() {
        let a = ipv6_for("org_a", 0);
        assert_eq!(a.octets()[0], 0xfd);
        assert_eq!(a.segments()[7], 1);
        assert_ne!(a, ipv6_for("org_b", 0));
        assert_eq!(a.segments()[..3], ipv6_for("org_a", 41).segments()[..3]);
    }
}
