//! Pictures of a plan: Graphviz DOT, Mermaid, and a plain JSON node/edge list.

use crate::plan::{Dependency, Plan, PlanNode};
use petgraph::visit::EdgeRef;
use serde::Serialize;

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The plan as a Graphviz digraph: steps as boxes (destructive ones red, approvals diamonds),
/// milestones as double octagons, data dependencies dashed.
#[must_use]
pub fn to_dot(plan: &Plan) -> String {
    let g = &plan.graph;
    let mut s = format!(
        "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n",
        dot_escape(&plan.runbook.name)
    );
    for i in g.node_indices() {
        let (label, attrs) = match &g[i] {
            PlanNode::Step(st) => {
                let mut attrs = Vec::new();
                match st.role {
                    drover_schema::Role::Approval => attrs.push("shape=diamond".to_owned()),
                    drover_schema::Role::Cutover => attrs.push("style=bold".to_owned()),
                    _ => {}
                }
                if st.effect == drover_schema::Effect::Destructive {
                    attrs.push("color=red".to_owned());
                }
                (
                    format!("{}\\n{}", dot_escape(&st.id), dot_escape(&st.action)),
                    attrs,
                )
            }
            PlanNode::Milestone(m) => {
                let mut attrs = vec!["shape=doubleoctagon".to_owned()];
                if m.stops_rto {
                    attrs.push("color=blue".to_owned());
                }
                (format!("{}\\n(milestone)", dot_escape(&m.id)), attrs)
            }
        };
        let extra = if attrs.is_empty() {
            String::new()
        } else {
            format!(", {}", attrs.join(", "))
        };
        s.push_str(&format!("  n{} [label=\"{label}\"{extra}];\n", i.index()));
    }
    for e in g.edge_references() {
        let style = if *e.weight() == Dependency::Data {
            " [style=dashed]"
        } else {
            ""
        };
        s.push_str(&format!(
            "  n{} -> n{}{style};\n",
            e.source().index(),
            e.target().index()
        ));
    }
    s.push_str("}\n");
    s
}

fn mermaid_text(s: &str) -> String {
    s.replace('"', "#quot;")
}

/// The plan as a Mermaid flowchart.
#[must_use]
pub fn to_mermaid(plan: &Plan) -> String {
    let g = &plan.graph;
    let mut s = "flowchart LR\n".to_owned();
    for i in g.node_indices() {
        let line = match &g[i] {
            PlanNode::Step(st) if st.role == drover_schema::Role::Approval => {
                format!(
                    "  n{}{{\"{}<br/>{}\"}}\n",
                    i.index(),
                    mermaid_text(&st.id),
                    st.action
                )
            }
            PlanNode::Step(st) => format!(
                "  n{}[\"{}<br/>{}\"]\n",
                i.index(),
                mermaid_text(&st.id),
                st.action
            ),
            PlanNode::Milestone(m) => format!("  n{}([\"{}\"])\n", i.index(), mermaid_text(&m.id)),
        };
        s.push_str(&line);
    }
    for e in g.edge_references() {
        let arrow = if *e.weight() == Dependency::Data {
            "-.->"
        } else {
            "-->"
        };
        s.push_str(&format!(
            "  n{} {arrow} n{}\n",
            e.source().index(),
            e.target().index()
        ));
    }
    s
}

#[derive(Serialize)]
struct JsonGraph<'a> {
    nodes: Vec<JsonNode<'a>>,
    edges: Vec<JsonEdge<'a>>,
}

#[derive(Serialize)]
struct JsonNode<'a> {
    id: &'a str,
    kind: &'static str,
    action: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonEdge<'a> {
    from: &'a str,
    to: &'a str,
    kind: Dependency,
}

/// The plan's nodes and edges as JSON (`{"nodes": [...], "edges": [...]}`), by id.
#[must_use]
pub fn to_json(plan: &Plan) -> String {
    let g = &plan.graph;
    let doc = JsonGraph {
        nodes: g
            .node_indices()
            .map(|i| match &g[i] {
                PlanNode::Step(s) => JsonNode {
                    id: &s.id,
                    kind: "step",
                    action: Some(&s.action),
                },
                PlanNode::Milestone(m) => JsonNode {
                    id: &m.id,
                    kind: "milestone",
                    action: None,
                },
            })
            .collect(),
        edges: g
            .edge_references()
            .map(|e| JsonEdge {
                from: g[e.source()].id(),
                to: g[e.target()].id(),
                kind: *e.weight(),
            })
            .collect(),
    };
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}
