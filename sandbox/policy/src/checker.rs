//! The column-constraint checker: walks a query's logical plan, computes the lineage of every
//! column, and rejects any use of a value that its source columns' constraints forbid.
//!
//! It judges values where they are used, not where they are named: a `group_by_only` column may
//! pass through a CTE's `SELECT *` as long as what reaches the result is a group key. The uses are
//! the result itself (and a subquery's result), predicates (WHERE, HAVING, JOIN ON, FILTER), GROUP
//! BY and DISTINCT, aggregate arguments, window functions, ORDER BY, LIMIT and UNNEST.
//!
//! Three things it must never do: accept a plan node it does not understand (it rejects the
//! unknown), let a subquery's result lose the lineage of the outer columns it was correlated on,
//! or let a `compare_only` value be compared across rows of different relations (the rows that
//! match would reveal it).

use std::collections::BTreeSet;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, JoinType};
use datafusion::logical_expr::utils::{grouping_set_to_exprlist, split_conjunction};
use datafusion::logical_expr::{Distinct, Expr, LogicalPlan, Subquery, Volatility};

use sandbox_catalog::Constraint;

use crate::lineage::{Flow, Item, Lineage, Origin, OutputColumn, Source};
use crate::rejection::{Place, Reason, Rejection};
use crate::views::Views;

/// Aggregates that reduce many values to one summary: the only ones an `aggregate_only` column may
/// feed. `min`, `max` and the quantiles return one row's value; the output audit requires enough
/// privacy units behind them. Collecting aggregates (`array_agg`, `string_agg`, `first_value` ...)
/// return raw values and are not here.
const REDUCING_AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "median",
    "stddev",
    "stddev_pop",
    "var",
    "var_pop",
    "corr",
    "covar_samp",
    "covar_pop",
    "regr_slope",
    "regr_intercept",
    "regr_count",
    "regr_r2",
    "regr_avgx",
    "regr_avgy",
    "regr_sxx",
    "regr_syy",
    "regr_sxy",
    "approx_distinct",
    "approx_median",
    "approx_percentile_cont",
    "approx_percentile_cont_with_weight",
    "percentile_cont",
    "bool_and",
    "bool_or",
];

/// Functions whose output can be far larger than their input (`repeat(s, 2000000)`): memory a
/// scalar function allocates is outside the query's memory pool, so one call could exhaust the
/// process. What remains is bounded by the SQL text's size times the batch size.
const AMPLIFYING_FUNCTIONS: &[&str] = &[
    "repeat",
    "lpad",
    "rpad",
    "replace",
    "regexp_replace",
    "array_repeat",
    "array_resize",
    "range",
    "generate_series",
];

/// Column names the sandbox keeps for itself.
pub(crate) const RESERVED: &str = "__sandbox_";

/// Checks `plan` and returns the lineage of each output column.
pub(crate) fn check(views: &Views, plan: &LogicalPlan) -> Result<Vec<OutputColumn>, Rejection> {
    let mut checker = Checker { views, origins: 0, within: Vec::new(), grouping_restricted: false };
    let lineage = checker.plan(plan, None)?;
    for l in &lineage {
        checker.consume(l, &Place::Output)?;
    }
    let fields = plan.schema().fields();
    Ok(fields.iter().zip(&lineage).map(|(f, l)| OutputColumn::new(f.name(), l)).collect())
}

struct Checker<'v> {
    views: &'v Views,
    origins: usize,
    /// Names of the subqueries being walked, for messages.
    within: Vec<String>,
    /// Whether the aggregates being walked are those of a grouping by raw `group_by_only` values.
    grouping_restricted: bool,
}

/// The columns an expression can name: one or more input relations, then enclosing queries.
#[derive(Clone, Copy)]
struct Scope<'a> {
    parts: &'a [(&'a DFSchema, &'a [Lineage])],
    outer: Option<&'a Scope<'a>>,
}

impl<'a> Scope<'a> {
    fn resolve(&self, c: &Column) -> Option<&'a Lineage> {
        self.parts.iter().find_map(|(schema, lineage)| schema.maybe_index_of_column(c).and_then(|i| lineage.get(i)))
    }

    fn resolve_outer(&self, c: &Column) -> Option<&'a Lineage> {
        let mut scope = self.outer;
        while let Some(s) = scope {
            if let Some(l) = s.resolve(c) {
                return Some(l);
            }
            scope = s.outer;
        }
        None
    }
}

impl Checker<'_> {
    fn fresh(&mut self) -> Origin {
        self.origins += 1;
        Origin(self.origins)
    }

    fn reject(&self, reason: Reason) -> Rejection {
        Rejection { reason, within: self.within.clone() }
    }

    /// The lineage of each output column of `plan`, checking every use of a value on the way.
    /// Grows the stack as it recurses: a long chain of `a + b + c ...` is a deep tree.
    #[recursive::recursive]
    fn plan(&mut self, plan: &LogicalPlan, outer: Option<&Scope<'_>>) -> Result<Vec<Lineage>, Rejection> {
        // The threshold rewrite names its hidden columns so; a query must not.
        if plan.schema().fields().iter().any(|f| f.name().starts_with(RESERVED)) {
            return Err(self.reject(Reason::Unsupported("names starting with __sandbox_, which are reserved")));
        }
        match plan {
            LogicalPlan::TableScan(scan) => {
                let Some(view) = self.views.find(&scan.source) else {
                    return Err(self.reject(Reason::NotAView(scan.table_name.to_string())));
                };
                if !scan.filters.is_empty() {
                    return Err(self.reject(Reason::Unsupported("table scans with pushed-down filters")));
                }
                let origin = self.fresh();
                let lineage = scan
                    .projected_schema
                    .fields()
                    .iter()
                    .map(|f| Lineage::column(&view.name, f.name(), view.constraint(f.name()), origin))
                    .collect();
                Ok(lineage)
            }
            LogicalPlan::Projection(p) => {
                let input = self.plan(&p.input, outer)?;
                let parts = [(p.input.schema().as_ref(), input.as_slice())];
                let scope = Scope { parts: &parts, outer };
                p.expr.iter().map(|e| self.expr(e, &scope)).collect()
            }
            LogicalPlan::Filter(f) => {
                let input = self.plan(&f.input, outer)?;
                let parts = [(f.input.schema().as_ref(), input.as_slice())];
                let scope = Scope { parts: &parts, outer };
                let place = match f.input.as_ref() {
                    LogicalPlan::Aggregate(_) => Place::Having,
                    _ => Place::Where,
                };
                self.predicate(&f.predicate, &scope, &place)?;
                Ok(input)
            }
            LogicalPlan::Aggregate(a) => {
                let input = self.plan(&a.input, outer)?;
                let parts = [(a.input.schema().as_ref(), input.as_slice())];
                let scope = Scope { parts: &parts, outer };
                let origin = self.fresh();
                let mut out = Vec::new();
                let groups = grouping_set_to_exprlist(&a.group_expr).map_err(|_| self.internal("grouping sets"))?;
                let mut restricted = false;
                for g in groups {
                    let l = self.expr(g, &scope)?;
                    self.consume(&l, &Place::GroupBy)?;
                    restricted |= l.items.iter().any(|i| {
                        i.flow == Flow::Value
                            && matches!(i.source, Source::Column { constraint: Constraint::GroupByOnly, .. })
                    });
                    out.push(l.became(Flow::GroupKey, origin));
                }
                if matches!(a.group_expr.as_slice(), [Expr::GroupingSet(_)]) {
                    out.push(Lineage::default()); // the internal grouping id
                }
                // (A rejection ends the whole check, so the flag needs restoring only on success.)
                let enclosing = std::mem::replace(&mut self.grouping_restricted, restricted);
                for e in &a.aggr_expr {
                    out.push(self.expr(e, &scope)?.became(Flow::Aggregated, origin));
                }
                self.grouping_restricted = enclosing;
                Ok(out.into_iter().map(|l| with_rows(l, origin)).collect())
            }
            LogicalPlan::Window(w) => {
                let input = self.plan(&w.input, outer)?;
                let parts = [(w.input.schema().as_ref(), input.as_slice())];
                let scope = Scope { parts: &parts, outer };
                let origin = self.fresh();
                let mut out = input.clone();
                for e in &w.window_expr {
                    out.push(with_rows(self.expr(e, &scope)?, origin));
                }
                Ok(out)
            }
            LogicalPlan::Sort(s) => {
                let input = self.plan(&s.input, outer)?;
                let parts = [(s.input.schema().as_ref(), input.as_slice())];
                let scope = Scope { parts: &parts, outer };
                for e in &s.expr {
                    let l = self.expr(&e.expr, &scope)?;
                    self.consume(&l, &Place::OrderBy)?;
                }
                Ok(input)
            }
            LogicalPlan::Limit(l) => {
                let input = self.plan(&l.input, outer)?;
                let scope = Scope { parts: &[], outer };
                for e in l.skip.iter().chain(&l.fetch) {
                    let lineage = self.expr(e, &scope)?;
                    self.consume(&lineage, &Place::Limit)?;
                }
                Ok(input)
            }
            LogicalPlan::Join(j) => {
                let left = self.plan(&j.left, outer)?;
                let right = self.plan(&j.right, outer)?;
                let parts =
                    [(j.left.schema().as_ref(), left.as_slice()), (j.right.schema().as_ref(), right.as_slice())];
                let scope = Scope { parts: &parts, outer };
                let mut condition = Lineage::default();
                for (l, r) in &j.on {
                    condition.extend(self.predicate(&l.clone().eq(r.clone()), &scope, &Place::JoinOn)?);
                }
                if let Some(filter) = &j.filter {
                    condition.extend(self.predicate(filter, &scope, &Place::JoinOn)?);
                }
                Ok(match j.join_type {
                    JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full => {
                        left.into_iter().chain(right).collect()
                    }
                    JoinType::LeftSemi | JoinType::LeftAnti => left,
                    JoinType::RightSemi | JoinType::RightAnti => right,
                    // The mark column says whether the row matched: it carries the condition.
                    JoinType::LeftMark => left.into_iter().chain([condition]).collect(),
                    JoinType::RightMark => right.into_iter().chain([condition]).collect(),
                })
            }
            LogicalPlan::Union(u) => {
                // A union's rows are rows of a new relation. A branch whose rows combine several
                // relations (a join) keeps their origins, so the union cannot hide that two of
                // its columns came from different rows.
                let origin = self.fresh();
                let mut out = vec![Lineage::rows(origin); u.schema.fields().len()];
                for input in &u.inputs {
                    let branch = self.plan(input, outer)?;
                    let origins: BTreeSet<Origin> = branch
                        .iter()
                        .flat_map(|l| &l.items)
                        .map(|i| i.origin)
                        .filter(|&o| o != Origin::CONSTANT)
                        .collect();
                    for (o, l) in out.iter_mut().zip(branch) {
                        o.extend(if origins.len() <= 1 { l.at(origin) } else { l });
                    }
                }
                Ok(out)
            }
            LogicalPlan::Distinct(Distinct::All(input)) => {
                let lineage = self.plan(input, outer)?;
                let origin = self.fresh();
                let mut out = Vec::new();
                for l in lineage {
                    self.consume(&l, &Place::Distinct)?;
                    out.push(with_rows(l.became(Flow::GroupKey, origin), origin));
                }
                Ok(out)
            }
            LogicalPlan::Distinct(Distinct::On(d)) => {
                let input = self.plan(&d.input, outer)?;
                let parts = [(d.input.schema().as_ref(), input.as_slice())];
                let scope = Scope { parts: &parts, outer };
                for e in &d.on_expr {
                    let l = self.expr(e, &scope)?;
                    self.consume(&l, &Place::DistinctOn)?;
                }
                // DISTINCT ON must sort by its keys first; sorting by a key is grouping by it.
                for e in d.sort_expr.iter().flatten().filter(|e| !d.on_expr.contains(&e.expr)) {
                    let l = self.expr(&e.expr, &scope)?;
                    self.consume(&l, &Place::OrderBy)?;
                }
                let origin = self.fresh();
                let mut out = Vec::new();
                for e in &d.select_expr {
                    let l = self.expr(e, &scope)?;
                    // Selecting a DISTINCT ON key selects the group's key.
                    let key = d.on_expr.iter().any(|k| k == e || matches!(e, Expr::Alias(a) if *a.expr == *k));
                    out.push(if key { l.became(Flow::GroupKey, origin) } else { l });
                }
                Ok(out)
            }
            LogicalPlan::SubqueryAlias(a) => {
                self.within.push(format!("`{}`", a.alias));
                let lineage = self.plan(&a.input, outer)?;
                self.within.pop();
                Ok(lineage)
            }
            // A subquery as a relation is correlated only in a LATERAL join, on a sibling relation
            // that no enclosing scope holds: refuse rather than resolve its references wrongly.
            LogicalPlan::Subquery(s) if !s.outer_ref_columns.is_empty() => {
                Err(self.reject(Reason::Unsupported("LATERAL subqueries (correlated on a sibling relation)")))
            }
            LogicalPlan::Subquery(s) => self.plan(&s.subquery, outer),
            LogicalPlan::Values(v) => {
                let origin = self.fresh();
                let scope = Scope { parts: &[], outer };
                let mut out = vec![Lineage::rows(origin); v.schema.fields().len()];
                for row in &v.values {
                    for (o, e) in out.iter_mut().zip(row) {
                        o.extend(self.expr(e, &scope)?);
                    }
                }
                Ok(out)
            }
            LogicalPlan::EmptyRelation(e) => Ok(vec![Lineage::default(); e.schema.fields().len()]),
            LogicalPlan::Unnest(u) => {
                // How many rows an unnested list makes depends on its values: unnesting uses them.
                let input = self.plan(&u.input, outer)?;
                let unnested: BTreeSet<usize> =
                    u.list_type_columns.iter().map(|(i, _)| *i).chain(u.struct_type_columns.iter().copied()).collect();
                for &i in &unnested {
                    self.consume(input.get(i).ok_or_else(|| self.internal("an unnest column"))?, &Place::Unnest)?;
                }
                let origin = self.fresh();
                let out = u.dependency_indices.iter().map(|&i| {
                    let l = input.get(i).cloned().unwrap_or_default();
                    if unnested.contains(&i) { with_rows(l, origin) } else { l }
                });
                Ok(out.collect())
            }
            LogicalPlan::RecursiveQuery(_) => {
                Err(self.reject(Reason::Unsupported("recursive queries (WITH RECURSIVE)")))
            }
            LogicalPlan::Repartition(_) => Err(self.reject(Reason::Unsupported("repartitioning (DISTRIBUTE BY)"))),
            LogicalPlan::Extension(e) => Err(self.reject(Reason::NotAQuery(e.node.name().to_owned()))),
            LogicalPlan::Statement(_)
            | LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Ddl(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::DescribeTable(_) => Err(self.reject(Reason::NotAQuery(plan.display().to_string()))),
        }
    }

    /// The lineage of an expression's value, checking the uses inside it (aggregate and window
    /// arguments, subqueries).
    #[recursive::recursive]
    fn expr(&mut self, e: &Expr, scope: &Scope<'_>) -> Result<Lineage, Rejection> {
        match e {
            Expr::Column(c) => scope.resolve(c).cloned().ok_or_else(|| self.internal("an unresolved column")),
            Expr::OuterReferenceColumn(_, c) => scope.resolve_outer(c).cloned().ok_or_else(|| {
                self.reject(Reason::Unsupported(
                    "a correlated subquery that refers to a sibling relation (LATERAL joins)",
                ))
            }),
            Expr::Literal(..) => Ok(Lineage::constant()),
            Expr::Placeholder(_) => Err(self.reject(Reason::Unsupported("parameter placeholders ($1)"))),
            Expr::ScalarVariable(..) => Err(self.reject(Reason::Unsupported("session variables (@name)"))),
            #[allow(deprecated)] // The planner expands wildcards; one left over would hide columns.
            Expr::Wildcard { .. } => Err(self.internal("an unexpanded wildcard")),
            Expr::GroupingSet(_) => Err(self.internal("a grouping set outside GROUP BY")),
            Expr::ScalarFunction(f) => {
                self.deterministic(f.func.signature().volatility, f.func.name())?;
                if AMPLIFYING_FUNCTIONS.contains(&f.func.name()) {
                    return Err(self.reject(Reason::Amplifying(f.func.name().to_owned())));
                }
                self.children(e, scope)
            }
            Expr::AggregateFunction(a) => {
                let name = a.func.name().to_owned();
                self.deterministic(a.func.signature().volatility, &name)?;
                // grouping() takes GROUP BY keys and says which ones a row is grouped by.
                let place = if name == "grouping" { Place::GroupBy } else { Place::Aggregate(name.clone()) };
                let mut out = Lineage::default();
                for arg in a.params.args.iter().chain(a.params.order_by.iter().map(|s| &s.expr)) {
                    let l = self.expr(arg, scope)?;
                    self.consume(&l, &place)?;
                    out.extend(l);
                }
                self.unidentified(&out, &name)?;
                if self.grouping_restricted {
                    self.no_members(a, &out, &name)?;
                }
                if let Some(filter) = &a.params.filter {
                    self.predicate(filter, scope, &Place::AggregateFilter(name))?;
                }
                // An aggregate's value is held by its accumulator, inside the memory pool.
                out.weight = 1;
                Ok(out.became(Flow::Aggregated, Origin::CONSTANT))
            }
            Expr::WindowFunction(w) => {
                let name = w.fun.name().to_owned();
                let place = Place::Window(name.clone());
                let p = &w.params;
                let mut out = Lineage::default();
                let order = p.order_by.iter().map(|s| &s.expr);
                for arg in p.args.iter().chain(&p.partition_by).chain(order) {
                    let l = self.expr(arg, scope)?;
                    self.consume(&l, &place)?;
                    out.extend(l);
                }
                if let Some(filter) = &p.filter {
                    self.predicate(filter, scope, &Place::WindowFilter(name))?;
                }
                Ok(out)
            }
            Expr::ScalarSubquery(s) => {
                let mut out = self.subquery(s, scope, true)?;
                out.extend(self.correlation(s, scope)?);
                Ok(out)
            }
            Expr::Exists(x) => {
                // Only whether rows exist comes out: that depends on the outer values it is
                // correlated on, whose use inside was checked.
                self.subquery(&x.subquery, scope, false)?;
                self.correlation(&x.subquery, scope)
            }
            Expr::InSubquery(i) => {
                let mut out = self.expr(&i.expr, scope)?;
                out.extend(self.subquery(&i.subquery, scope, true)?);
                out.extend(self.correlation(&i.subquery, scope)?);
                Ok(out)
            }
            Expr::SetComparison(s) => {
                let mut out = self.expr(&s.expr, scope)?;
                out.extend(self.subquery(&s.subquery, scope, true)?);
                out.extend(self.correlation(&s.subquery, scope)?);
                Ok(out)
            }
            // Every other expression computes its value row by row from its children.
            _ => self.children(e, scope),
        }
    }

    fn children(&mut self, e: &Expr, scope: &Scope<'_>) -> Result<Lineage, Rejection> {
        let mut children = Vec::new();
        e.apply_children(|c| {
            children.push(c);
            Ok(TreeNodeRecursion::Continue)
        })
        .map_err(|_| self.internal("an expression"))?;
        let mut out = Lineage::default();
        let mut parts = 0u64;
        for c in children {
            let l = self.expr(c, scope)?;
            parts = parts.saturating_add(l.weight);
            out.extend(l);
        }
        if concatenates(e) {
            out.weight = parts;
            if parts > MAX_VALUE_WEIGHT {
                return Err(self.reject(Reason::TooLarge { parts, limit: MAX_VALUE_WEIGHT }));
            }
        }
        Ok(out)
    }

    /// The lineage of a subquery's result column. What it returns counts as one value per outer
    /// row, except `compare_only` values: those stay values of the subquery's rows, so comparing
    /// them with the outer row is a comparison across rows.
    ///
    /// A result that is `used` (a scalar subquery's value, the set of IN or ANY/ALL) is a use like
    /// the query's own result: one row's raw restricted value must not come out of it.
    fn subquery(&mut self, s: &Subquery, scope: &Scope<'_>, used: bool) -> Result<Lineage, Rejection> {
        self.within.push("subquery".to_owned());
        let lineage = self.plan(&s.subquery, Some(scope))?;
        if used {
            for l in &lineage {
                self.consume(l, &Place::SubqueryResult)?;
            }
        }
        self.within.pop();
        let weight = lineage.iter().map(|l| l.weight).max().unwrap_or(0);
        let items = lineage.into_iter().flat_map(|l| l.items).map(|i| {
            let compared =
                i.flow == Flow::Value && matches!(i.source, Source::Column { constraint: Constraint::CompareOnly, .. });
            if compared { i } else { Item { origin: Origin::CONSTANT, ..i } }
        });
        Ok(Lineage { items: items.collect(), weight })
    }

    /// The outer columns a subquery is correlated on, at any depth of nesting: its result
    /// depends on them. (`outer_ref_columns` lists only the subquery's own references; one made
    /// by a subquery inside it would be missed.) References to the subquery's own levels do not
    /// resolve here and are skipped.
    fn correlation(&mut self, s: &Subquery, scope: &Scope<'_>) -> Result<Lineage, Rejection> {
        let mut columns = Vec::new();
        let _ = s.subquery.apply_with_subqueries(|node| {
            node.apply_expressions(|e| {
                e.apply(|e| {
                    if let Expr::OuterReferenceColumn(_, c) = e {
                        columns.push(c.clone());
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            })
        });
        let mut out = Lineage::default();
        for c in columns.iter().chain(s.outer_ref_columns.iter().filter_map(|e| match e {
            Expr::OuterReferenceColumn(_, c) => Some(c),
            _ => None,
        })) {
            if let Some(lineage) = scope.resolve(c).or_else(|| scope.resolve_outer(c)) {
                out.items.extend(lineage.items.iter().cloned().map(|i| Item { correlated: true, ..i }));
            }
        }
        Ok(out)
    }

    /// Checks a condition that decides which rows are kept, conjunct by conjunct. Returns the
    /// lineage of the whole condition.
    fn predicate(&mut self, e: &Expr, scope: &Scope<'_>, place: &Place) -> Result<Lineage, Rejection> {
        let mut all = Lineage::default();
        for conjunct in split_conjunction(e) {
            let lineage = self.expr(conjunct, scope)?;
            self.consume(&lineage, place)?;
            self.same_row(&lineage, place)?;
            all.extend(lineage);
        }
        Ok(all)
    }

    /// A `compare_only` value may be compared only with constants and values of its own row: a
    /// comparison with other rows' values (another table's, another scan's, a subquery's set or
    /// an aggregate over other rows) says, through which rows match or how many, what it is.
    fn same_row(&self, lineage: &Lineage, place: &Place) -> Result<(), Rejection> {
        let items: Vec<&Item> = lineage.items.iter().filter(|i| !i.correlated).collect();
        let compared = items.iter().find(|i| {
            i.flow == Flow::Value && matches!(i.source, Source::Column { constraint: Constraint::CompareOnly, .. })
        });
        let Some(Item { source: Source::Column { view, column, .. }, origin, .. }) = compared else { return Ok(()) };
        if items.iter().any(|i| i.origin != Origin::CONSTANT && i.origin != *origin) {
            let reason =
                Reason::CrossRowComparison { view: view.clone(), column: column.clone(), place: place.clone() };
            return Err(self.reject(reason));
        }
        Ok(())
    }

    /// Checks that every source of a value may be used at `place`.
    fn consume(&self, lineage: &Lineage, place: &Place) -> Result<(), Rejection> {
        for item in &lineage.items {
            let Source::Column { view, column, constraint } = &item.source else { continue };
            if !allowed(*constraint, item.flow, place) {
                let reason = Reason::Constraint {
                    view: view.clone(),
                    column: column.clone(),
                    constraint: *constraint,
                    place: place.clone(),
                };
                return Err(self.reject(reason));
            }
        }
        Ok(())
    }

    /// An aggregate may not reduce raw `aggregate_only` values together with an identifier: `min`
    /// of `person_id || amount` is one person's amount with their pseudonym, and a sum of
    /// `CASE WHEN person_id = ... THEN amount END` is one person's total.
    /// An identifier counts in any form: raw, or made a group key or aggregate on the way.
    fn unidentified(&self, arguments: &Lineage, function: &str) -> Result<(), Rejection> {
        let value = arguments.items.iter().find_map(|i| match &i.source {
            Source::Column { view, column, constraint: Constraint::AggregateOnly } if i.flow == Flow::Value => {
                Some(format!("{view}.{column}"))
            }
            _ => None,
        });
        if let (Some(value), Some(identifier)) = (value, identifier(arguments)) {
            let reason = Reason::IdentifiedAggregate { value, identifier, function: function.to_owned() };
            return Err(self.reject(reason));
        }
        Ok(())
    }

    /// In a grouping by raw `group_by_only` values, an aggregate of identifiers would name the
    /// members of each group (`array_agg(citizen_id)` per district, or `max(CASE WHEN
    /// citizen_id = ... THEN 1 END)`); joining such lists rebuilds each person's values. Only
    /// counting the identifiers themselves is allowed: `count(DISTINCT citizen_id)`.
    fn no_members(
        &self,
        a: &datafusion::logical_expr::expr::AggregateFunction,
        arguments: &Lineage,
        function: &str,
    ) -> Result<(), Rejection> {
        let Some(identifier) = identifier(arguments) else { return Ok(()) };
        let counting = matches!(function, "count" | "approx_distinct")
            && a.params.order_by.is_empty()
            && matches!(a.params.args.as_slice(), [Expr::Column(_)]);
        if counting {
            return Ok(());
        }
        Err(self.reject(Reason::GroupMembers { identifier, function: function.to_owned() }))
    }

    fn deterministic(&self, volatility: Volatility, name: &str) -> Result<(), Rejection> {
        match volatility {
            Volatility::Immutable => Ok(()),
            Volatility::Stable | Volatility::Volatile => Err(self.reject(Reason::Volatile(name.to_owned()))),
        }
    }

    fn internal(&self, what: &'static str) -> Rejection {
        self.reject(Reason::Unsupported(what))
    }
}

/// A pseudonymized column among a value's sources, in any form.
fn identifier(lineage: &Lineage) -> Option<String> {
    lineage.items.iter().find_map(|i| match &i.source {
        Source::Column { view, column, constraint: Constraint::Pseudonymized } => Some(format!("{view}.{column}")),
        _ => None,
    })
}

/// The most stored values or constants one value may be assembled from. Concatenating a value
/// with itself through nested queries doubles it each level (`concat(s, s)` 34 times is 2^34
/// times the input); other expressions are no larger than their largest part, so a value stays
/// within this many times the largest input.
const MAX_VALUE_WEIGHT: u64 = 256;

/// Whether an expression's value holds all of its parts (rather than one of them, or a number).
fn concatenates(e: &Expr) -> bool {
    match e {
        Expr::BinaryExpr(b) => b.op == datafusion::logical_expr::Operator::StringConcat,
        Expr::ScalarFunction(f) => matches!(
            f.func.name(),
            "concat"
                | "concat_ws"
                | "make_array"
                | "array_concat"
                | "array_append"
                | "array_prepend"
                | "array_union"
                | "named_struct"
                | "struct"
                | "map"
                | "overlay"
        ),
        _ => false,
    }
}

/// Marks a derived relation's values as varying with its own rows.
fn with_rows(mut lineage: Lineage, origin: Origin) -> Lineage {
    lineage.extend(Lineage::rows(origin));
    lineage
}

/// The constraint table of DESIGN.md section 4, for one source in one form at one place.
fn allowed(constraint: Constraint, flow: Flow, place: &Place) -> bool {
    match (constraint, flow) {
        (Constraint::Plaintext | Constraint::Pseudonymized, _) => true,
        (Constraint::Forbidden, _) => false,
        // Once grouped or aggregated, a value is a released statistic of many rows.
        (_, Flow::GroupKey | Flow::Aggregated) => true,
        (Constraint::GroupByOnly, Flow::Value) => place.is_grouping(),
        (Constraint::AggregateOnly, Flow::Value) => {
            matches!(place, Place::Aggregate(name) if REDUCING_AGGREGATES.contains(&name.as_str()))
        }
        (Constraint::CompareOnly, Flow::Value) => place.is_predicate(),
    }
}
