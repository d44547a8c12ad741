//! Drops groups under the threshold (DESIGN.md section 4): wherever an admitted query groups by
//! raw `group_by_only` values, or by a classification (`classify`) of a `group_by_only`,
//! `compare_only` or `aggregate_only` column, groups with fewer than `min_group_units` distinct
//! privacy units are removed before anything above sees them; wherever it aggregates raw
//! `aggregate_only` values, an aggregate with fewer units behind it becomes NULL. An aggregate
//! with a FILTER counts the units its FILTER keeps. So a one-person "group" (grouping by a pseudonym, or filtering to
//! one person) never yields a value of that person.
//!
//! What this cannot see — an aggregate that isolates one person inside its argument, such as
//! `sum(CASE WHEN month = '2025-01' AND ...)` chosen to match one person in a large group — is
//! what the output audit's dominance rules, on host-computed evidence, are for.
//!
//! The rewrite works on admitted plans. Above each view scan it adds the privacy unit as a
//! hidden column (a 64-bit id of the unit), carries hidden columns through every node up to the
//! aggregations, counts distinct units there (as far as the threshold, `crate::units`), filters
//! or nulls, and projects back to the original schema. It must never change a query's schema or
//! a value it keeps, and where it cannot carry a unit it refuses to run the query rather than run
//! it unprotected.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Builder, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, JoinType, ScalarValue};
use datafusion::datasource::provider_as_source;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::utils::{conjunction, grouping_set_to_exprlist};
use datafusion::logical_expr::{
    Aggregate, ColumnarValue, Distinct, DistinctOn, Expr, Filter, LogicalPlan, Projection, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Subquery, TableScanBuilder, Union, Volatility, cast, lit, when,
};
use sandbox_catalog::Constraint;

use crate::classify;
use crate::views::Views;

/// Names of the hidden columns; the checker refuses queries that use the prefix.
pub(crate) const HIDDEN: &str = "__sandbox_unit_";
const UNITS: &str = "__sandbox_units_";

/// The plan with small groups dropped, and whether any aggregation needed it.
pub(crate) fn apply(plan: &LogicalPlan, views: &Views, min_units: usize) -> Result<(LogicalPlan, bool)> {
    let count = crate::units::units_at_least(min_units);
    let mut rewriter = Rewriter { views, min_units: min_units as i64, scans: 0, applied: false, count };
    let plan = rewriter.root(plan)?;
    Ok((plan, rewriter.applied))
}

struct Rewriter<'v> {
    views: &'v Views,
    min_units: i64,
    scans: usize,
    applied: bool,
    /// Counts a group's distinct units up to the threshold (`crate::units`).
    count: Arc<datafusion::logical_expr::AggregateUDF>,
}

/// The scans whose raw restricted values a column carries.
#[derive(Debug, Clone, Default)]
struct Provenance {
    /// Raw `group_by_only` values.
    grouped: BTreeSet<usize>,
    /// Raw `aggregate_only` values.
    aggregated: BTreeSet<usize>,
    /// Raw `compare_only` values, which only a classification can make a key.
    compared: BTreeSet<usize>,
    /// Classifications (`classify`) of restricted values: periods and bands.
    classified: BTreeSet<usize>,
}

impl Provenance {
    fn extend(&mut self, other: &Provenance) {
        self.grouped.extend(&other.grouped);
        self.aggregated.extend(&other.aggregated);
        self.compared.extend(&other.compared);
        self.classified.extend(&other.classified);
    }

    /// The provenance of a classification of these values: a period or band of a restricted
    /// value, no longer a raw value to aggregate or compare.
    fn classification(&self) -> Provenance {
        let sources = [&self.grouped, &self.aggregated, &self.compared, &self.classified];
        Provenance { classified: sources.into_iter().flatten().copied().collect(), ..Provenance::default() }
    }

    /// The scans whose units a grouping by this value must count: it is a raw `group_by_only`
    /// value or a classification of a restricted one.
    fn keys(self) -> BTreeSet<usize> {
        self.grouped.into_iter().chain(self.classified).collect()
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

    /// Column expressions for the hidden unit columns.
    fn unit_columns(&self) -> Vec<Expr> {
        self.units().into_values().map(|name| Expr::Column(Column::from_name(name))).collect()
    }

    /// The scans behind the raw restricted values an expression reads, and behind those it
    /// classifies.
    fn provenance_of(&self, e: &Expr) -> Provenance {
        let schema = self.plan.schema();
        let mut out = Provenance::default();
        let _ = e.apply(|e| {
            match e {
                Expr::Column(c) => {
                    if let Some(i) = schema.maybe_index_of_column(c) {
                        out.extend(&self.provenance[i]);
                    }
                }
                Expr::ScalarFunction(f) if classify::is_classify(f) => {
                    for argument in &f.args {
                        out.extend(&self.provenance_of(argument).classification());
                    }
                    return Ok(TreeNodeRecursion::Jump);
                }
                _ => {}
            }
            Ok(TreeNodeRecursion::Continue)
        });
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

/// What a count of distinct units guards: the whole group (its row is dropped) or one aggregate
/// (its value becomes NULL).
#[derive(Debug, Clone, PartialEq)]
enum Guard {
    Group,
    Aggregate(usize),
}

/// One count of distinct units of a scan, among the rows `filter` keeps.
#[derive(Debug, Clone, PartialEq)]
struct UnitCount {
    scan: usize,
    filter: Option<Box<Expr>>,
    guard: Guard,
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

    /// The node with the subqueries in its own expressions rewritten as queries of their own.
    fn with_subqueries(&mut self, plan: &LogicalPlan) -> Result<LogicalPlan> {
        let rewritten = plan.clone().map_subqueries(|sub| match sub {
            LogicalPlan::Subquery(s) => {
                let inner = self.root(&s.subquery)?;
                Ok(Transformed::yes(LogicalPlan::Subquery(Subquery { subquery: Arc::new(inner), ..s })))
            }
            other => Ok(Transformed::no(other)),
        })?;
        Ok(rewritten.data)
    }

    #[recursive::recursive]
    fn node(&mut self, plan: &LogicalPlan) -> Result<Node> {
        // Subqueries first, so that whatever this node becomes carries the rewritten ones.
        let plan = &self.with_subqueries(plan)?;
        Ok(match plan {
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
                        Constraint::CompareOnly => Provenance { compared: BTreeSet::from([id]), ..Default::default() },
                        _ => Provenance::default(),
                    })
                    .collect();
                // The same scan of the view with its units (`View::units`), whose last column is
                // the unit's id; the projection keeps the scan's columns and names the id.
                let units = provider_as_source(Arc::clone(&view.units));
                let last = units.schema().fields().len() - 1;
                let projection = match &scan.projection {
                    Some(p) => p.iter().copied().chain([last]).collect(),
                    None => (0..=last).collect(),
                };
                let with_units = TableScanBuilder::new(scan.table_name.clone(), units)
                    .with_projection(Some(projection))
                    .with_filters(scan.filters.clone())
                    .with_fetch(scan.fetch)
                    .build()?;
                let unit = with_units.projected_schema.qualified_field(with_units.projected_schema.fields().len() - 1);
                exprs.push(Expr::Column(Column::from(unit)).alias(format!("{HIDDEN}{id}")));
                provenance.push(Provenance::default());
                let plan = Projection::try_new(exprs, Arc::new(LogicalPlan::TableScan(with_units)))?;
                Node { plan: LogicalPlan::Projection(plan), provenance }
            }
            LogicalPlan::Projection(p) => {
                let input = self.node(&p.input)?;
                let mut provenance: Vec<Provenance> = p.expr.iter().map(|e| input.provenance_of(e)).collect();
                let mut exprs = p.expr.clone();
                for unit in input.unit_columns() {
                    exprs.push(unit);
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
                // Window output: the input's columns, hidden ones included, then the window expressions.
                let input = self.node(&w.input)?;
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
                let keys: BTreeSet<usize> = groups.iter().flat_map(|g| input.provenance_of(g).keys()).collect();
                let mut counts: Vec<UnitCount> =
                    keys.iter().map(|&scan| UnitCount { scan, filter: None, guard: Guard::Group }).collect();
                for (j, e) in a.aggr_expr.iter().enumerate() {
                    let Some(f) = aggregate_function(e) else { continue };
                    let arguments = f.params.args.iter().chain(f.params.order_by.iter().map(|s| &s.expr));
                    let mut scans: BTreeSet<usize> =
                        arguments.flat_map(|arg| input.provenance_of(arg).aggregated).collect();
                    // A FILTER on a grouping by a restricted key could keep one person of the group.
                    if f.params.filter.is_some() {
                        scans.extend(&keys);
                    }
                    let filter = &f.params.filter;
                    counts.extend(scans.into_iter().map(|scan| UnitCount {
                        scan,
                        filter: filter.clone(),
                        guard: Guard::Aggregate(j),
                    }));
                }
                if counts.is_empty() {
                    let aggregate =
                        Aggregate::try_new(Arc::new(input.plan), a.group_expr.clone(), a.aggr_expr.clone())?;
                    Node::plain(LogicalPlan::Aggregate(aggregate))
                } else {
                    self.guard(input, a.group_expr.clone(), a.aggr_expr.clone(), counts)?
                }
            }
            LogicalPlan::Distinct(Distinct::All(inner)) => {
                let input = self.node(inner)?;
                let visible = input.visible();
                let keys: BTreeSet<usize> = visible.iter().flat_map(|e| input.provenance_of(e).keys()).collect();
                if keys.is_empty() {
                    let projected = LogicalPlan::Projection(Projection::try_new(visible, Arc::new(input.plan))?);
                    Node::plain(LogicalPlan::Distinct(Distinct::All(Arc::new(projected))))
                } else {
                    // SELECT DISTINCT is GROUP BY every selected column.
                    let counts =
                        keys.into_iter().map(|scan| UnitCount { scan, filter: None, guard: Guard::Group }).collect();
                    self.guard(input, visible, Vec::new(), counts)?
                }
            }
            LogicalPlan::Distinct(Distinct::On(d)) => {
                let input = self.node(&d.input)?;
                let on: Vec<Provenance> = d.on_expr.iter().map(|e| input.provenance_of(e)).collect();
                if on.iter().any(|p| !p.grouped.is_empty()) {
                    return Err(refuse("DISTINCT ON a group_by_only column; use GROUP BY"));
                }
                if on.iter().any(|p| !p.classified.is_empty()) {
                    return Err(refuse("DISTINCT ON a classification of a restricted column; use GROUP BY"));
                }
                // One row per key: its values, and its units, go on up.
                let mut provenance: Vec<Provenance> = d.select_expr.iter().map(|e| input.provenance_of(e)).collect();
                let mut select = d.select_expr.clone();
                for unit in input.unit_columns() {
                    select.push(unit);
                    provenance.push(Provenance::default());
                }
                let on = DistinctOn::try_new(d.on_expr.clone(), select, d.sort_expr.clone(), Arc::new(input.plan))?;
                Node { plan: LogicalPlan::Distinct(Distinct::On(on)), provenance }
            }
            LogicalPlan::Union(u) => {
                let branches: Vec<Node> = u.inputs.iter().map(|i| self.node(i)).collect::<Result<_>>()?;
                let units: BTreeSet<String> = branches.iter().flat_map(|b| b.units().into_values()).collect();
                let mut provenance = vec![Provenance::default(); u.schema.fields().len()];
                let mut inputs = Vec::new();
                for branch in branches {
                    let visible = branch.visible();
                    for (p, e) in provenance.iter_mut().zip(&visible) {
                        p.extend(&branch.provenance_of(e));
                    }
                    // Every branch carries every unit column, NULL where it has none.
                    let have: BTreeSet<String> = branch.units().into_values().collect();
                    let mut exprs = visible;
                    for name in &units {
                        exprs.push(match have.contains(name) {
                            true => Expr::Column(Column::from_name(name)),
                            false => cast(lit(ScalarValue::Null), DataType::Int64).alias(name),
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
        })
    }

    /// GROUP BY `groups` computing `aggregates`, then: drop the groups where a `Guard::Group`
    /// count is under the threshold, and null each aggregate where one of its counts is; return
    /// the aggregation's original columns.
    fn guard(&mut self, input: Node, groups: Vec<Expr>, aggregates: Vec<Expr>, counts: Vec<UnitCount>) -> Result<Node> {
        let units = input.units();
        let original = Aggregate::try_new(Arc::new(input.plan.clone()), groups.clone(), aggregates.clone())?;
        let mut extended = aggregates;
        let mut group_conditions = Vec::new();
        let mut aggregate_conditions: BTreeMap<usize, Vec<Expr>> = BTreeMap::new();
        for (i, count) in counts.iter().enumerate() {
            let name =
                units.get(&count.scan).ok_or_else(|| refuse("the privacy unit does not reach the aggregation"))?;
            let mut distinct = self.count.call(vec![Expr::Column(Column::from_name(name))]);
            if let Expr::AggregateFunction(f) = &mut distinct {
                f.params.filter = count.filter.clone();
            }
            let counted = format!("{UNITS}{i}");
            extended.push(distinct.alias(&counted));
            let enough = Expr::Column(Column::from_name(counted)).gt_eq(lit(self.min_units));
            match count.guard {
                Guard::Group => group_conditions.push(enough),
                Guard::Aggregate(j) => aggregate_conditions.entry(j).or_default().push(enough),
            }
        }
        self.applied = true;
        let mut plan = LogicalPlan::Aggregate(Aggregate::try_new(Arc::new(input.plan), groups, extended)?);
        if let Some(condition) = conjunction(group_conditions) {
            plan = LogicalPlan::Filter(Filter::try_new(condition, Arc::new(plan))?);
        }
        // The original columns, in order; the internal grouping id is not one a query reads.
        let first_aggregate = original.schema.fields().len() - original.aggr_expr.len();
        let output: Vec<Expr> = original
            .schema
            .iter()
            .enumerate()
            .filter(|(_, (_, f))| f.name() != Aggregate::INTERNAL_GROUPING_ID)
            .map(|(position, (q, f))| {
                let column = Expr::Column(Column::from((q, f)));
                let guarded = position.checked_sub(first_aggregate).and_then(|j| aggregate_conditions.get(&j));
                match guarded.and_then(|c| conjunction(c.clone())) {
                    Some(condition) => {
                        let nulled = when(condition, column).end().expect("one branch");
                        nulled.alias_qualified(q.cloned(), f.name())
                    }
                    None => column,
                }
            })
            .collect();
        Ok(Node::plain(LogicalPlan::Projection(Projection::try_new(output, Arc::new(plan))?)))
    }
}

/// The aggregate function an aggregate expression computes, under its alias if any.
fn aggregate_function(e: &Expr) -> Option<&AggregateFunction> {
    match e {
        Expr::AggregateFunction(f) => Some(f),
        Expr::Alias(a) => aggregate_function(&a.expr),
        _ => None,
    }
}

/// The function that makes a privacy unit's id: only in the plans of `View::units`.
pub(crate) fn unit_udf() -> Arc<ScalarUDF> {
    // A basis of its own for each view (std's per-process random keys): the ids of raw
    // identifiers are not a fixed function of them, should one ever be seen.
    let basis = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u64);
    let signature = Signature::exact(vec![DataType::Utf8], Volatility::Immutable);
    Arc::new(ScalarUDF::new_from_impl(UnitId { basis, signature }))
}

/// A privacy unit as a 64-bit id (FNV-1a of its raw text from a random basis), so counting
/// distinct units holds eight bytes per unit and needs no pseudonym. A collision makes a count smaller, never larger:
/// it can only drop more. The ids are counted, never shown.
#[derive(Debug, PartialEq, Eq, Hash)]
struct UnitId {
    basis: u64,
    signature: Signature,
}

impl ScalarUDFImpl for UnitId {
    fn name(&self) -> &str {
        "sandbox_unit"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let input = match &args.args[0] {
            ColumnarValue::Array(a) => Arc::clone(a),
            ColumnarValue::Scalar(s) => s.to_array_of_size(args.number_rows)?,
        };
        let strings = input.as_any().downcast_ref::<StringArray>().expect("signature is Utf8");
        let mut out = Int64Builder::with_capacity(strings.len());
        for value in strings.iter() {
            out.append_option(value.map(|v| {
                let hash = v.bytes().fold(self.basis, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
                hash as i64
            }));
        }
        let array: ArrayRef = Arc::new(out.finish());
        Ok(ColumnarValue::Array(array))
    }
}
