//! Loopback addresses for Pods: `<prefix>.N`, N from 2 to 254 (`.1` is the node).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;

/// Hands out one loopback address per Pod uid.
#[derive(Debug)]
pub struct IpPool {
    prefix: [u8; 3],
    used: Mutex<BTreeMap<u8, String>>,
}

/// Every address of the pool is taken.
#[derive(Debug, thiserror::Error)]
#[error("no free pod address left in {0}.{1}.{2}.2-254", .prefix[0], .prefix[1], .prefix[2])]
pub struct PoolExhausted {
    /// The pool's first three octets.
    pub prefix: [u8; 3],
}

impl IpPool {
    /// A pool of `a.b.c.2` to `a.b.c.254`.
    pub fn new(prefix: [u8; 3]) -> Self {
        Self {
            prefix,
            used: Mutex::new(BTreeMap::new()),
        }
    }

    /// The node's own address, `a.b.c.1`.
    pub fn node_ip(&self) -> Ipv4Addr {
        self.addr(1)
    }

    fn addr(&self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.prefix[0], self.prefix[1], self.prefix[2], n)
    }

    /// The address of Pod `uid`: the one it has if `preferred` is free or already
    /// its own (a Pod keeps its IP across a runner restart), else the lowest free one.
    pub fn allocate(
        &self,
        uid: &str,
        preferred: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, PoolExhausted> {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((n, _)) = used.iter().find(|(_, owner)| owner.as_str() == uid) {
            return Ok(self.addr(*n));
        }
        let wanted = preferred
            .filter(|ip| ip.octets()[..3] == self.prefix && (2..=254).contains(&ip.octets()[3]))
            .map(|ip| ip.octets()[3])
            .filter(|n| !used.contains_key(n));
        let n = wanted
            .or_else(|| (2..=254).find(|n| !used.contains_key(n)))
            .ok_or(PoolExhausted {
                prefix: self.prefix,
            })?;
        used.insert(n, uid.to_owned());
        Ok(self.addr(n))
    }

    /// Frees the address of Pod `uid`, if it had one.
    pub fn release(&self, uid: &str) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        used.retain(|_, owner| owner != uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_addresses_reused_after_release() {
        let pool = IpPool::new([127, 0, 1]);
        let a = pool.allocate("a", None).unwrap();
        let b = pool.allocate("b", None).unwrap();
        assert_eq!(a, Ipv4Addr::new(127, 0, 1, 2));
        assert_eq!(b, Ipv4Addr::new(127, 0, 1, 3));
        assert_eq!(pool.allocate("a", None).unwrap(), a);
        pool.release("a");
        assert_eq!(
            pool.allocate("c", Some(Ipv4Addr::new(127, 0, 1, 3)))
                .unwrap(),
            a
        );
        assert_eq!(
            pool.allocate("d", Some(Ipv4Addr::new(127, 0, 1, 9)))
                .unwrap(),
            Ipv4Addr::new(127, 0, 1, 9)
        );
    }

    #[test]
    fn exhausts() {
        let pool = IpPool::new([127, 0, 1]);
        for i in 0..253 {
            pool.allocate(&i.to_string(), None).unwrap();
        }
        assert!(pool.allocate("x", None).is_err());
    }
}
