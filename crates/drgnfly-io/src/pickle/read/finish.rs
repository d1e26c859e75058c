//! Turning the machine's final object into a [`PyValue`], bounded in depth and work.

use std::collections::HashMap;

use super::{Item, Machine, Obj, HINT};
use crate::error::{Error, Result};
use crate::pickle::value::PyValue;

/// Nesting depth of the final value (tuples of arrays need 2).
const MAX_DEPTH: usize = 64;
/// Objects visited while converting the final value, counting shared ones each time they are reached.
const MAX_VISITS: usize = 1 << 24;

impl Machine<'_> {
    pub(super) fn into_value(mut self, root: Item) -> Result<PyValue> {
        let mut refs = HashMap::new();
        let mut budget = MAX_VISITS;
        self.count_arrays(root, 0, &mut refs, &mut budget)?;
        let mut budget = MAX_VISITS;
        self.convert(root, 0, &mut refs, &mut budget)
    }

    fn visit(&self, depth: usize, budget: &mut usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(self.unsupported(format!(
                "values nested more than {MAX_DEPTH} levels deep (or containing themselves)"
            )));
        }
        *budget = budget
            .checked_sub(1)
            .ok_or_else(|| self.unsupported("a value too large once shared parts are expanded"))?;
        Ok(())
    }

    /// How many times each array is reached, so the last reference can take it without copying.
    fn count_arrays(
        &self,
        item: Item,
        depth: usize,
        refs: &mut HashMap<usize, usize>,
        budget: &mut usize,
    ) -> Result<()> {
        self.visit(depth, budget)?;
        let Item::Obj(i) = item else { return Ok(()) };
        match self.objs.get(i) {
            Some(Obj::Array(_)) => *refs.entry(i).or_insert(0) += 1,
            Some(Obj::Tuple(items) | Obj::List(items)) => {
                for &child in items {
                    self.count_arrays(child, depth + 1, refs, budget)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn convert(
        &mut self,
        item: Item,
        depth: usize,
        refs: &mut HashMap<usize, usize>,
        budget: &mut usize,
    ) -> Result<PyValue> {
        self.visit(depth, budget)?;
        let index = match item {
            Item::None => return Ok(PyValue::None),
            Item::Bool(b) => return Ok(PyValue::Bool(b)),
            Item::Int(i) => return Ok(PyValue::Int(i)),
            Item::Float(f) => return Ok(PyValue::Float(f)),
            Item::Obj(i) => i,
        };
        let leaf = match self.objs.get_mut(index) {
            Some(Obj::Str(s)) => Ok(Some(PyValue::Str(s.clone()))),
            Some(Obj::Bytes(b)) => Ok(Some(PyValue::Bytes(b.to_vec()))),
            Some(Obj::Array(slot)) => {
                let remaining = refs.entry(index).or_insert(1);
                *remaining = remaining.saturating_sub(1);
                let array = if *remaining == 0 { slot.take() } else { slot.clone() };
                array
                    .map(|a| Some(PyValue::Array(a)))
                    .ok_or_else(|| "a numpy array that never received its data (BUILD missing)".to_string())
            }
            Some(Obj::Tuple(_) | Obj::List(_)) => Ok(None),
            _ => Err(self.describe(item)),
        };
        match leaf {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(what) => {
                return Err(Error::invalid(
                    self.origin,
                    Some(format!("pickle ending at byte {}", self.pos)),
                    format!(
                        "contains {what}; only numpy arrays, tuples and lists of them (and plain scalars) are read"
                    ),
                    HINT,
                ))
            }
        }
        let (is_tuple, items) = match self.objs.get(index) {
            Some(Obj::Tuple(items)) => (true, items.clone()),
            Some(Obj::List(items)) => (false, items.clone()),
            _ => (true, Vec::new()),
        };
        let values = items
            .into_iter()
            .map(|child| self.convert(child, depth + 1, refs, budget))
            .collect::<Result<Vec<_>>>()?;
        Ok(if is_tuple { PyValue::Tuple(values) } else { PyValue::List(values) })
    }
}
