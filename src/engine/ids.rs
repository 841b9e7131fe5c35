//! A list of task ids that stores one id inline: most dependency edges are
//! single (a chain link has one upstream and one downstream), so the common
//! case needs no allocation. 16 bytes: a longer list is boxed, so that every
//! link record (two lists per linked task) stays small.

#[derive(Default, Clone, Debug)]
pub(crate) enum Ids {
    #[default]
    Empty,
    One(u64),
    // Boxed on purpose: a 16-byte list rather than 24 (clippy prefers a Vec).
    #[allow(clippy::box_collection)]
    Many(Box<Vec<u64>>),
}

impl Ids {
    /// The ids of `v`, which is dropped if it holds fewer than two.
    pub(crate) fn from_vec(v: Vec<u64>) -> Self {
        match v.len() {
            0 => Ids::Empty,
            1 => Ids::One(v[0]),
            _ => Ids::Many(Box::new(v)),
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, id: u64) {
        if let Ids::Empty = self {
            *self = Ids::One(id);
            return;
        }
        self.push_slow(id);
    }

    #[inline(never)]
    fn push_slow(&mut self, id: u64) {
        match self {
            Ids::Empty => *self = Ids::One(id),
            Ids::One(a) => {
                let a = *a;
                *self = Ids::Many(Box::new(vec![a, id]));
            }
            Ids::Many(v) => v.push(id),
        }
    }

    pub(crate) fn as_slice(&self) -> &[u64] {
        match self {
            Ids::Empty => &[],
            Ids::One(a) => std::slice::from_ref(a),
            Ids::Many(v) => v,
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.as_slice().iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::Ids;

    #[test]
    fn grows_from_inline_to_vector() {
        let mut ids = Ids::default();
        assert!(ids.as_slice().is_empty());
        ids.push(3);
        assert_eq!(ids.as_slice(), &[3]);
        ids.push(5);
        ids.push(9);
        assert_eq!(ids.iter().collect::<Vec<_>>(), vec![3, 5, 9]);
    }

    #[test]
    fn from_vec_keeps_order_and_stores_one_inline() {
        for n in [0, 1, 2, 5] {
            let v: Vec<u64> = (0..n as u64).map(|i| i * 2).collect();
            let ids = Ids::from_vec(v.clone());
            assert_eq!(ids.as_slice(), &v[..]);
            assert_eq!(matches!(ids, Ids::One(_)), n == 1);
        }
        assert_eq!(std::mem::size_of::<Ids>(), 16);
    }
}
