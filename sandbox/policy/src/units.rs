//! Counting a group's privacy units only as far as the threshold needs: `units_at_least(id)` is
//! the number of distinct ids in a group, but never more than `k` (the threshold). A group keeps
//! at most `k` ids and stops looking once it has them, so counting costs a comparison or two a
//! row and a few bytes a group, where an exact `count(DISTINCT id)` keeps every unit of every
//! group in a hash set (ten million entries for a table of ten million people). The threshold
//! asks only `units >= k`, which this answers exactly.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};

/// The function for threshold `k`.
pub(crate) fn units_at_least(k: usize) -> Arc<AggregateUDF> {
    let signature = Signature::exact(vec![DataType::Int64], Volatility::Immutable);
    Arc::new(AggregateUDF::new_from_impl(UnitsAtLeast { k, signature }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct UnitsAtLeast {
    k: usize,
    signature: Signature,
}

impl AggregateUDFImpl for UnitsAtLeast {
    fn name(&self) -> &str {
        "sandbox_units_at_least"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(format_state_name(args.name, "units"), DataType::Binary, true))])
    }

    fn accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(One { k: self.k, units: Units::None }))
    }

    fn groups_accumulator_supported(&self, _: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(&self, _: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(Groups { k: self.k, groups: Vec::new(), many: 0 }))
    }
}

/// The distinct ids a group has seen, at most `k`. Sixteen bytes for a group of one unit.
#[derive(Debug, Default, Clone)]
enum Units {
    #[default]
    None,
    One(i64),
    #[expect(clippy::box_collection, reason = "a thin pointer keeps every group at sixteen bytes")]
    Many(Box<Vec<i64>>),
}

impl Units {
    /// Adds `id`; whether the group now holds one more.
    fn insert(&mut self, id: i64, k: usize) -> bool {
        match self {
            Units::None if k > 0 => *self = Units::One(id),
            Units::One(first) if *first != id && k > 1 => {
                // Room for k at once: it never grows past it, so `size` counts what it holds.
                let mut ids = Vec::with_capacity(k);
                ids.extend([*first, id]);
                *self = Units::Many(Box::new(ids));
            }
            Units::Many(ids) if ids.len() < k && !ids.contains(&id) => ids.push(id),
            _ => return false,
        }
        true
    }

    fn len(&self) -> usize {
        match self {
            Units::None => 0,
            Units::One(_) => 1,
            Units::Many(ids) => ids.len(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            Units::None => Vec::new(),
            Units::One(id) => id.to_le_bytes().to_vec(),
            Units::Many(ids) => ids.iter().flat_map(|id| id.to_le_bytes()).collect(),
        }
    }

    fn merge(&mut self, state: &[u8], k: usize) {
        for chunk in state.chunks_exact(8) {
            self.insert(i64::from_le_bytes(chunk.try_into().expect("eight bytes")), k);
        }
    }
}

fn included(filter: Option<&BooleanArray>, row: usize) -> bool {
    filter.is_none_or(|f| f.is_valid(row) && f.value(row))
}

/// Without a GROUP BY.
#[derive(Debug)]
struct One {
    k: usize,
    units: Units,
}

impl Accumulator for One {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        for id in values[0].as_primitive::<Int64Type>().iter().flatten() {
            self.units.insert(id, self.k);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(self.units.len() as i64)))
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.k * 8
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::Binary(Some(self.units.encode()))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for state in states[0].as_binary::<i32>().iter().flatten() {
            self.units.merge(state, self.k);
        }
        Ok(())
    }
}

/// For every group of a GROUP BY.
struct Groups {
    k: usize,
    groups: Vec<Units>,
    /// Groups holding more than one id, for `size`.
    many: usize,
}

impl GroupsAccumulator for Groups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize(total_num_groups, Units::None);
        let ids = values[0].as_primitive::<Int64Type>();
        for (row, &group) in group_indices.iter().enumerate() {
            if ids.is_valid(row) && included(opt_filter, row) && self.groups[group].insert(ids.value(row), self.k) {
                self.many += usize::from(self.groups[group].len() == 2);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let groups = emit_to.take_needed(&mut self.groups);
        self.many -= groups.iter().filter(|g| g.len() > 1).count();
        Ok(Arc::new(groups.iter().map(|g| Some(g.len() as i64)).collect::<Int64Array>()))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let groups = emit_to.take_needed(&mut self.groups);
        self.many -= groups.iter().filter(|g| g.len() > 1).count();
        Ok(vec![Arc::new(groups.iter().map(|g| Some(g.encode())).collect::<BinaryArray>())])
    }

    fn merge_batch(&mut self, values: &[ArrayRef], group_indices: &[usize], total_num_groups: usize) -> Result<()> {
        self.groups.resize(total_num_groups, Units::None);
        for (state, &group) in values[0].as_binary::<i32>().iter().zip(group_indices) {
            let before = self.groups[group].len();
            self.groups[group].merge(state.unwrap_or_default(), self.k);
            self.many += usize::from(before < 2 && self.groups[group].len() >= 2);
        }
        Ok(())
    }

    fn convert_to_state(&self, values: &[ArrayRef], opt_filter: Option<&BooleanArray>) -> Result<Vec<ArrayRef>> {
        let ids = values[0].as_primitive::<Int64Type>();
        let states: BinaryArray = (0..ids.len())
            .map(|row| {
                let mut units = Units::None;
                if ids.is_valid(row) && included(opt_filter, row) {
                    units.insert(ids.value(row), self.k);
                }
                Some(units.encode())
            })
            .collect();
        Ok(vec![Arc::new(states)])
    }

    fn size(&self) -> usize {
        self.groups.capacity() * size_of::<Units>() + self.many * (size_of::<Vec<i64>>() + self.k * 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_keeps_distinct_ids_up_to_k() {
        let mut units = Units::None;
        for id in [7, 7, 3, 7, 3, 9, 11, 12] {
            units.insert(id, 3);
        }
        assert_eq!(units.len(), 3, "7, 3, 9: then full");
        let mut merged = Units::One(3);
        merged.merge(&units.encode(), 4);
        assert_eq!(merged.len(), 3, "3 twice counts once");
        let mut none = Units::None;
        assert!(!none.insert(1, 0), "a threshold of 0 needs no unit");
        let mut one = Units::None;
        one.insert(1, 1);
        assert!(!one.insert(2, 1));
        assert_eq!(one.len(), 1);
    }
}
