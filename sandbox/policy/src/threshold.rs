//! Drops groups under the threshold (DESIGN.md section 4): wherever an admitted query groups by
//! raw `group_by_only` values, or aggregates raw `aggregate_only` values, groups with fewer than
//! `min_group_units` distinct privacy units behind them are removed before anything above sees
//! them. An aggregate with a FILTER counts the units its FILTER keeps. So a one-person "group"
//! (grouping by a pseudonym, or filtering to one person) never yields a value of that person.
//!
//! What this cannot see — an aggregate that isolates one person inside its argument, such as
//! `sum(CASE WHEN citizen_id = 'x' THEN amount END)` over a large group — is what the output
//! audit's dominance rules, on host-computed evidence, are for.
//!
//! The rewrite works on admitted plans. Above each view scan it adds the dataset's privacy unit as
//! a hidden column, carries hidden columns through every node up to the grouping nodes, counts
//! distinct units there, filters, and projects back to the original schema. It must never change
//! a query's schema or any group it keeps, and where it cannot carry a unit it refuses to run the
//! query rather than run it unprotected.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, JoinType, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::functions_aggregate::count::count_distinct;
use datafusion::logical_expr::utils::{conjunction, grouping_set_to_exprlist};
use datafusion::logical_expr::{
    Aggregate, Distinct, DistinctOn, Expr, Filter, LogicalPlan, Projection, Subquery, Union, cast, lit,
};
use sandbox_catalog::Constraint;

use crate::views::Views;

/// Names of the hidden columns, which no analysis query may use.
pub(crate) const HIDDEN: &str = "__sandbox_unit_";
const UNITS: &str = "__sandbox_units_";

/// The plan with small groups dropped, and whether any grouping needed it.
pub(crate) fn apply(plan: &LogicalPlan, views: &Views, min_units: usize) -> Result<(LogicalPlan, bool)> {
    let mut rewriter = Rewriter { views, min_units: min_units as i64, scans: 0, applied: false };
    let plan = rewriter.root(plan)?;
    Ok((plan, rewriter.applied))
}

struct Rewriter<'v> {
    views: &'v Views,
    min_units: i64,
    scans: usize,
    applied: bool,
}

/// The scans whose raw restricted values a column carries.
#[derive(Debug, Clone, Default)]
struct Provenance {
    /// Raw `group_by_only` values.
    grouped: BTreeSet<usize>,
    /// Raw `aggregate_only` values.
    aggregated: BTreeSet<usize>,
}

impl Provenance {
    fn extend(&mut self, other: &Provenance) {
        self.grouped.extend(&other.grouped);
        self.aggregated.extend(&other.aggregated);
    }
}

/// A rewritten node: its plan, and the provenance of each column of its schema. Hidden unit
/// columns are named `__sandbox_unit_<scan>`.
struct Node {
    plan: LogicalPlan,
    provenance: Vec<Provenance>,
}

impl Node {
    fn plain(plan: LogicalPlan) -> Node {
        let provenance = vec![Provenance::default(); plan.schema().fields().len()];
        Node { plan, provenance }
    }

    /// The hidden unit columns this node's schema carries, by scan.
    fn units(&self) -> BTreeMap<usize, String> {
        self.plan
            .schema()
            .fields()
            .iter()
            .filter_map(|f| Some((f.name().strip_prefix(HIDDEN)?.parse().ok()?, f.name().clone())))
            .collect()
    }

    /// The scans behind the raw restricted values an expression reads.
    fn provenance_of(&self, e: &Expr) -> Provenance {
        let schema = self.plan.schema();
        let mut out = Provenance::default();
        for i in e.column_refs().into_iter().filter_map(|c| schema.maybe_index_of_column(c)) {
            out.extend(&self.provenance[i]);
        }
        out
    }

    /// Expressions for the columns that are not hidden.
    fn visible(&self) -> Vec<Expr> {
        self.plan
            .schema()
            .iter()
            .filter(|(_, f)| !f.name().starts_with(HIDDEN))
            .map(|(q, f)| Expr::Column(Column::from((q, f))))
            .collect()
    }
}

fn refuse(what: &str) -> DataFusionError {
    DataFusionError::Plan(format!("groups under the threshold cannot be dropped here: {what}"))
}

impl Rewriter<'_> {
    /// Rewrites a query (or a subquery) and removes the hidden columns from its result.
    fn root(&mut self, plan: &LogicalPlan) -> Result<LogicalPlan> {
        let node = self.node(plan)?;
        if node.units().is_empty() {
            return Ok(node.plan);
        }
        let visible = node.visible();
        Ok(LogicalPlan::Projection(Projection::try_new(visible, Arc::new(node.plan))?))
    }

    #[recursive::recursive]
    fn node(&mut self, plan: &LogicalPlan) -> Result<Node> {
        let node = match plan {
            LogicalPlan::TableScan(scan) => {
                let view = self.views.find(&scan.source).ok_or_else(|| refuse("a scan of no policy view"))?;
                self.scans += 1;
                let id = self.scans;
                let schema = &scan.projected_schema;
                let mut exprs: Vec<Expr> = schema.iter().map(|(q, f)| Expr::Column(Column::from((q, f)))).collect();
                let mut provenance: Vec<Provenance> = schema
                    .fields()
                    .iter()
                    .map(|f| match view.constraint(f.name()) {
                        Constraint::GroupByOnly => Provenance { grouped: BTreeSet::from([id]), ..Default::default() },
                        Constraint::AggregateOnly => {
                            Provenance { aggregated: BTreeSet::from([id]), ..Default::default() }
                        }
                        _ => Provenance::default(),
                    })
                    .collect();
                if let Some((q, unit)) = schema.iter().find(|(_, f)| *f.name() == view.privacy_unit) {
                    let column = Expr::Column(Column::from((q, unit)));
                    exprs.push(cast(column, DataType::Utf8).alias(format!("{HIDDEN}{id}")));
                    provenance.push(Provenance::default());
                }
                let plan = Projection::try_new(exprs, Arc::new(plan.clone()))?;
                Node { plan: LogicalPlan::Projection(plan), provenance }
            }
            LogicalPlan::Projection(p) => {
                let input = self.node(&p.input)?;
                let mut provenance: Vec<Provenance> = p.expr.iter().map(|e| input.provenance_of(e)).collect();
                let mut exprs = p.expr.clone();
                for name in input.units().into_values() {
                    exprs.push(Expr::Column(Column::from_name(name)));
                    provenance.push(Provenance::default());
                }
                Node { plan: LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(input.plan))?), provenance }
            }
            LogicalPlan::Filter(f) => {
                let input = self.node(&f.input)?;
                let plan = LogicalPlan::Filter(Filter::try_new(f.predicate.clone(), Arc::new(input.plan))?);
                Node { plan, provenance: input.provenance }
            }
            LogicalPlan::Sort(_) | LogicalPlan::Limit(_) | LogicalPlan::SubqueryAlias(_) | LogicalPlan::Subquery(_) => {
                let input = self.node(plan.inputs()[0])?;
                Node { plan: plan.with_new_exprs(plan.expressions(), vec![input.plan])?, provenance: input.provenance }
            }
            LogicalPlan::Window(w) => {
                let input = self.node(&w.input)?;
                // Window output: the input's columns, hidden ones included, then the window expressions.
                let mut provenance = input.provenance;
                provenance.extend(w.window_expr.iter().map(|_| Provenance::default()));
                Node { plan: plan.with_new_exprs(plan.expressions(), vec![input.plan])?, provenance }
            }
            LogicalPlan::Join(j) => {
                let left = self.node(&j.left)?;
                let right = self.node(&j.right)?;
                let provenance = match j.join_type {
                    JoinType::LeftSemi | JoinType::LeftAnti => left.provenance,
                    JoinType::RightSemi | JoinType::RightAnti => right.provenance,
                    JoinType::LeftMark => left.provenance.into_iter().chain([Provenance::default()]).collect(),
                    JoinType::RightMark => right.provenance.into_iter().chain([Provenance::default()]).collect(),
                    _ => left.provenance.into_iter().chain(right.provenance).collect(),
                };
                Node { plan: plan.with_new_exprs(plan.expressions(), vec![left.plan, right.plan])?, provenance }
            }
            LogicalPlan::Aggregate(a) => {
                let input = self.node(&a.input)?;
                let groups = grouping_set_to_exprlist(&a.group_expr)?;
                let keys: BTreeSet<usize> = groups.iter().flat_map(|g| input.provenance_of(g).grouped).collect();
                // Each unit count to require: the group's, for raw group_by_only keys; and each
                // aggregate's own, for raw aggregate_only arguments or a FILTER on a grouping.
                let mut counts: Vec<(usize, Option<Box<Expr>>)> = keys.iter().map(|&k| (k, None)).collect();
                for e in &a.aggr_expr {
                    let Some(f) = aggregate_function(e) else { continue };
                    let arguments = f.params.args.iter().chain(f.params.order_by.iter().map(|s| &s.expr));
                    let mut scans: BTreeSet<usize> =
                        arguments.flat_map(|arg| input.provenance_of(arg).aggregated).collect();
                    if f.params.filter.is_some() {
                        scans.extend(&keys);
                    }
                    counts.extend(scans.into_iter().map(|k| (k, f.params.filter.clone())));
                }
                counts.dedup();
                if counts.is_empty() {
                    let aggregate =
                        Aggregate::try_new(Arc::new(input.plan), a.group_expr.clone(), a.aggr_expr.clone())?;
                    Node::plain(LogicalPlan::Aggregate(aggregate))
                } else {
                    let original = a.schema.iter().map(|(q, f)| Expr::Column(Column::from((q, f)))).collect();
                    self.drop_small_groups(input, a.group_expr.clone(), a.aggr_expr.clone(), &counts, original)?
                }
            }
            LogicalPlan::Distinct(Distinct::All(inner)) => {
                let input = self.node(inner)?;
                let visible = input.visible();
                let keys: BTreeSet<usize> = visible.iter().flat_map(|e| input.provenance_of(e).grouped).collect();
                if keys.is_empty() {
                    let projected = LogicalPlan::Projection(Projection::try_new(visible, Arc::new(input.plan))?);
                    Node::plain(LogicalPlan::Distinct(Distinct::All(Arc::new(projected))))
                } else {
                    // SELECT DISTINCT is GROUP BY every selected column.
                    let counts: Vec<_> = keys.into_iter().map(|k| (k, None)).collect();
                    self.drop_small_groups(input, visible.clone(), Vec::new(), &counts, visible)?
                }
            }
            LogicalPlan::Distinct(Distinct::On(d)) => {
                let input = self.node(&d.input)?;
                if d.on_expr.iter().any(|e| !input.provenance_of(e).grouped.is_empty()) {
                    return Err(refuse("DISTINCT ON a group_by_only column; use GROUP BY"));
                }
                let on = DistinctOn::try_new(
                    d.on_expr.clone(),
                    d.select_expr.clone(),
                    d.sort_expr.clone(),
                    Arc::new(input.plan),
                )?;
                Node::plain(LogicalPlan::Distinct(Distinct::On(on)))
            }
            LogicalPlan::Union(u) => {
                let branches: Vec<Node> = u.inputs.iter().map(|i| self.node(i)).collect::<Result<_>>()?;
                let units: BTreeSet<String> = branches.iter().flat_map(|b| b.units().into_values()).collect();
                let width = u.schema.fields().len();
                let mut provenance = vec![Provenance::default(); width];
                let mut inputs = Vec::new();
                for branch in branches {
                    let visible = branch.visible();
                    for (p, e) in provenance.iter_mut().zip(&visible) {
                        p.extend(&branch.provenance_of(e));
                    }
                    // Every branch carries every unit column, NULL where it has none.
                    let have = branch.units();
                    let mut exprs = visible;
                    for name in &units {
                        exprs.push(match have.values().any(|n| n == name) {
                            true => Expr::Column(Column::from_name(name)),
                            false => cast(lit(ScalarValue::Null), DataType::Utf8).alias(name),
                        });
                    }
                    inputs.push(Arc::new(LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(branch.plan))?)));
                }
                provenance.extend(units.iter().map(|_| Provenance::default()));
                Node { plan: LogicalPlan::Union(Union::try_new_with_loose_types(inputs)?), provenance }
            }
            LogicalPlan::Unnest(_) => {
                let input = self.node(plan.inputs()[0])?;
                let plan = plan.with_new_exprs(plan.expressions(), vec![input.plan])?;
                let LogicalPlan::Unnest(u) = &plan else { unreachable!("rebuilt from an unnest") };
                let provenance = u
                    .dependency_indices
                    .iter()
                    .map(|&i| input.provenance.get(i).cloned().unwrap_or_default())
                    .collect();
                Node { plan, provenance }
            }
            LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => Node::plain(plan.clone()),
            other => return Err(refuse(&format!("a {} node", other.display()))),
        };
        // Subqueries in this node's expressions are queries of their own.
        let plan = node
            .plan
            .map_subqueries(|sub| match sub {
                LogicalPlan::Subquery(s) => {
                    let inner = self.root(&s.subquery)?;
                    Ok(Transformed::yes(LogicalPlan::Subquery(Subquery { subquery: Arc::new(inner), ..s })))
                }
                other => Ok(Transformed::no(other)),
            })?
            .data;
        Ok(Node { plan, provenance: node.provenance })
    }

    /// GROUP BY `groups` computing `aggregates`, keeping only groups where each of `counts` — the
    /// distinct privacy units of a scan, among the rows a FILTER keeps — reaches `min_units`, and
    /// returning `output`.
    fn drop_small_groups(
        &mut self,
        input: Node,
        groups: Vec<Expr>,
        mut aggregates: Vec<Expr>,
        counts: &[(usize, Option<Box<Expr>>)],
        output: Vec<Expr>,
    ) -> Result<Node> {
        let units = input.units();
        let mut conditions = Vec::new();
        for (i, (scan, filter)) in counts.iter().enumerate() {
            let name = units.get(scan).ok_or_else(|| refuse("the privacy unit does not reach the aggregation"))?;
            let mut count = count_distinct(Expr::Column(Column::from_name(name)));
            if let Expr::AggregateFunction(f) = &mut count {
                f.params.filter = filter.clone();
            }
            let counted = format!("{UNITS}{i}");
            aggregates.push(count.alias(&counted));
            conditions.push(Expr::Column(Column::from_name(counted)).gt_eq(lit(self.min_units)));
        }
        self.applied = true;
        let aggregate = Aggregate::try_new(Arc::new(input.plan), groups, aggregates)?;
        let kept = Filter::try_new(
            conjunction(conditions).expect("one scan at least"),
            Arc::new(LogicalPlan::Aggregate(aggregate)),
        )?;
        Ok(Node::plain(LogicalPlan::Projection(Projection::try_new(output, Arc::new(LogicalPlan::Filter(kept)))?)))
    }
}

/// The aggregate function an aggregate expression computes, under its alias if any.
fn aggregate_function(e: &Expr) -> Option<&datafusion::logical_expr::expr::AggregateFunction> {
    match e {
        Expr::AggregateFunction(f) => Some(f),
        Expr::Alias(a) => aggregate_function(&a.expr),
        _ => None,
    }
}
