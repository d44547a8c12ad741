//! Column lineage: which view columns flow into a value, and in what form.
//!
//! The checker computes a [`Lineage`] for every column of every plan node and judges each use of
//! a value against the constraints of the columns it came from. This module only names things.

use std::collections::BTreeSet;
use std::fmt;

use sandbox_catalog::Constraint;

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// A column of a policy view.
    Column { view: String, column: String, constraint: Constraint },
    /// Values that vary from row to row of a derived relation (a union, VALUES, an aggregate,
    /// a window function, an unnest) without coming from a view column. Carries no constraint;
    /// it exists so that comparisons across rows of different relations can be seen.
    Rows,
}

/// The form a source's value has reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Flow {
    /// The value itself, or a row-by-row function of it.
    Value,
    /// The value's period or band in a classification, row by row (`classify`): for a
    /// `compare_only` or `aggregate_only` column, one the catalog publishes. Such a value may be
    /// grouped by and compared where the raw value may not; until it is grouped it is still one
    /// row's value.
    Classified,
    /// The value as a GROUP BY key (or DISTINCT): one per group.
    GroupKey,
    /// Reduced by an aggregate function.
    Aggregated,
}

impl Flow {
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::Value => "value",
            Flow::Classified => "classified",
            Flow::GroupKey => "group key",
            Flow::Aggregated => "aggregated",
        }
    }

    pub fn zh(self) -> &'static str {
        match self {
            Flow::Value => "原值",
            Flow::Classified => "公开分类",
            Flow::GroupKey => "分组键",
            Flow::Aggregated => "聚合值",
        }
    }
}

/// Identifies the rows a value was read from: each scan, and each relation a plan derives
/// (union, aggregate, VALUES ...), has its own. [`Origin::CONSTANT`] marks values that are the same
/// for every row they are compared with (an uncorrelated subquery's result).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Origin(pub(crate) usize);

impl Origin {
    pub(crate) const CONSTANT: Origin = Origin(0);
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Item {
    pub(crate) source: Source,
    pub(crate) flow: Flow,
    pub(crate) origin: Origin,
    /// Reached the value only as an outer column a subquery is correlated on. Every comparison
    /// of it inside the subquery was checked there; it still counts for where the value is used.
    pub(crate) correlated: bool,
    /// The value is the source's stored value itself, passed on unchanged (through aliases,
    /// projections, unions, subquery relations, and as a group key of itself), not computed from
    /// it. A grouping key may be a bare identifier (one group per person) but nothing computed
    /// from one: `citizen_id = 'x'` or `substr(citizen_id, 1, 3)` as a key singles people out or
    /// sorts them by their identifier.
    pub(crate) exact: bool,
}

/// Everything that flows into one value. Empty for constants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Lineage {
    pub(crate) items: BTreeSet<Item>,
    /// How many stored values or constants the value is assembled from, at most: 1 for a column
    /// or constant, the sum of the parts for a concatenation, the largest part otherwise. It
    /// bounds how much larger than its inputs a value can grow.
    pub(crate) weight: u64,
}

impl Lineage {
    pub(crate) fn column(view: &str, column: &str, constraint: Constraint, origin: Origin) -> Lineage {
        let source = Source::Column { view: view.to_owned(), column: column.to_owned(), constraint };
        let item = Item { source, flow: Flow::Value, origin, correlated: false, exact: true };
        Lineage { items: BTreeSet::from([item]), weight: 1 }
    }

    pub(crate) fn rows(origin: Origin) -> Lineage {
        let item = Item { source: Source::Rows, flow: Flow::Value, origin, correlated: false, exact: false };
        Lineage { items: BTreeSet::from([item]), weight: 0 }
    }

    pub(crate) fn constant() -> Lineage {
        Lineage { items: BTreeSet::new(), weight: 1 }
    }

    /// Adds the sources of `other`; the value is as large as the larger of the two.
    pub(crate) fn extend(&mut self, other: Lineage) {
        self.items.extend(other.items);
        self.weight = self.weight.max(other.weight);
    }

    /// The same sources after a step that turns raw values into `flow` (grouping, aggregating),
    /// now read from the rows `origin`. A group key is still its value; an aggregate is not. A
    /// row's value, raw or classified, becomes what the step makes of it; a value already grouped
    /// stays a group key unless it is aggregated.
    pub(crate) fn became(self, flow: Flow, origin: Origin) -> Lineage {
        let items = self
            .items
            .into_iter()
            .map(|i| {
                let exact = i.exact && flow != Flow::Aggregated;
                let raw = matches!(i.flow, Flow::Value | Flow::Classified);
                let flow = if raw || flow == Flow::Aggregated { flow } else { i.flow };
                Item { flow, origin, exact, ..i }
            })
            .collect();
        Lineage { items, weight: self.weight }
    }

    /// The same sources, in a value computed from them rather than passed on.
    pub(crate) fn computed(self) -> Lineage {
        Lineage { items: self.items.into_iter().map(|i| Item { exact: false, ..i }).collect(), weight: self.weight }
    }

    /// The same sources, read from the rows `origin`.
    pub(crate) fn at(self, origin: Origin) -> Lineage {
        Lineage { items: self.items.into_iter().map(|i| Item { origin, ..i }).collect(), weight: self.weight }
    }
}

/// What `sandbox policy check` reports for an accepted query: where each output column's values
/// come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputColumn {
    pub name: String,
    /// View columns behind the values, with the form they arrive in. Empty: constants or counts.
    pub sources: Vec<(Source, Flow)>,
}

impl OutputColumn {
    pub(crate) fn new(name: &str, lineage: &Lineage) -> OutputColumn {
        let sources: BTreeSet<(Source, Flow)> = lineage
            .items
            .iter()
            .filter(|i| matches!(i.source, Source::Column { .. }))
            .map(|i| (i.source.clone(), i.flow))
            .collect();
        OutputColumn { name: name.to_owned(), sources: sources.into_iter().collect() }
    }
}

impl fmt::Display for OutputColumn {
    /// `name: view.column [constraint, flow], ...` or `name: (no view column)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.name)?;
        if self.sources.is_empty() {
            return f.write_str("(no view column)");
        }
        for (i, (source, flow)) in self.sources.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if let Source::Column { view, column, constraint } = source {
                write!(f, "{view}.{column} [{constraint}, {}]", flow.as_str())?;
            }
        }
        Ok(())
    }
}
