//! Server-side printing: the `meta.k8s.io/v1` Table kube-apiserver returns when a client asks
//! for `application/json;as=Table;v=v1;g=meta.k8s.io`, which every `kubectl get` does.
//!
//! Columns and cells are ports of kube-apiserver's printers (`pkg/printers/internalversion`,
//! Kubernetes 1.33) over the objects' Kubernetes JSON. Kinds kube-apiserver has no printer for
//! (Role, ClusterRole, LimitRange) get its default `Name`/`Created At` table. As in
//! kube-apiserver, rows always carry the wide (priority 1) cells; `kubectl -o wide` decides
//! which columns to show.

use std::cmp::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use navarch_api::kinds::KindInfo;
use navarch_api::selectors::{Operator, Requirement};
use navarch_api::validation::names::{is_qualified_name, is_valid_label_value};
use navarch_api::{ApiError, Quantity};
use serde_json::{Map, Value, json};

/// What each row's `object` holds: `?includeObject=` of a Table request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    /// `"object": null`.
    None,
    /// A `PartialObjectMetadata` with the object's whole `metadata` (the default).
    #[default]
    Metadata,
    /// The full object (kubectl asks for it with `--sort-by`).
    Object,
}

impl IncludeObject {
    /// Parses `?includeObject=`; an empty value is the default. Anything else is kube-apiserver's
    /// BadRequest.
    pub fn parse(value: &str) -> Result<Self, ApiError> {
        match value {
            "" | "Metadata" => Ok(Self::Metadata),
            "None" => Ok(Self::None),
            "Object" => Ok(Self::Object),
            other => Err(ApiError::bad_request(format!(
                "Unable to convert to Table as requested: includeObject: Invalid value: \
                 {other:?}: must be 'Metadata', 'Object', 'None', or empty"
            ))),
        }
    }
}

/// The `meta.k8s.io` version a Table was asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TableVersion {
    #[default]
    V1,
    V1Beta1,
}

impl TableVersion {
    /// `meta.k8s.io/v1` or `meta.k8s.io/v1beta1`: the Table's (and the row objects') apiVersion.
    pub fn api_version(self) -> &'static str {
        match self {
            Self::V1 => "meta.k8s.io/v1",
            Self::V1Beta1 => "meta.k8s.io/v1beta1",
        }
    }
}

/// The encoding a Table was asked in (kube-apiserver serves Tables as JSON or YAML only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableFormat {
    Json,
    Yaml,
}

/// A request, by its `Accept` header, for a Table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableRequest {
    pub version: TableVersion,
    pub format: TableFormat,
}

/// How to build a Table.
#[derive(Clone, Debug)]
pub struct TableOptions {
    pub include_object: IncludeObject,
    /// Unused by the server: like kube-apiserver it always prints the priority 1 cells.
    pub wide_hint: bool,
    /// Leave out `columnDefinitions` (`null`), as watch events after the first do.
    pub no_headers: bool,
    pub version: TableVersion,
    /// The clock AGE-style cells are measured against.
    pub now: SystemTime,
}

impl Default for TableOptions {
    fn default() -> Self {
        Self {
            include_object: IncludeObject::Metadata,
            wide_hint: false,
            no_headers: false,
            version: TableVersion::V1,
            now: SystemTime::now(),
        }
    }
}

/// The Table of `items` (all of `kind`). `list_meta` is the list's metadata: its
/// `resourceVersion`, `continue` and `remainingItemCount` become the Table's.
pub fn table(kind: &KindInfo, items: &[Value], list_meta: Value, opts: &TableOptions) -> Value {
    let printer = Printer::of(kind);
    let now = unix_nanos(opts.now);
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| row_json(kind, printer, obj, now, opts))
        .collect();
    let mut metadata = Map::new();
    for key in ["resourceVersion", "continue"] {
        if let Some(v) = list_meta.get(key).and_then(Value::as_str)
            && !v.is_empty()
        {
            metadata.insert(key.into(), v.into());
        }
    }
    if let Some(n) = list_meta
        .get("remainingItemCount")
        .filter(|v| v.is_number())
    {
        metadata.insert("remainingItemCount".into(), n.clone());
    }
    let columns = if opts.no_headers {
        Value::Null
    } else {
        columns_json(printer.columns())
    };
    json!({
        "kind": "Table",
        "apiVersion": opts.version.api_version(),
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// The one-row Table of a single object (a GET, or a watch event), whose `resourceVersion` is
/// the object's, as kube-apiserver does.
pub fn table_for_object(kind: &KindInfo, object: &Value, opts: &TableOptions) -> Value {
    let rv = object["metadata"]["resourceVersion"].clone();
    table(
        kind,
        std::slice::from_ref(object),
        json!({ "resourceVersion": rv }),
        opts,
    )
}

/// The `columnDefinitions` of `kind`'s Table, priority 1 (wide) columns included.
pub fn column_definitions(kind: &KindInfo) -> Value {
    columns_json(Printer::of(kind).columns())
}

/// Turns the objects of a watch into Tables the way kube-apiserver's watch encoder does: each
/// event's `object` is a one-row Table; only the first carries `columnDefinitions` (later ones
/// have `null`, and kubectl reuses the headers it has); a `Status` (an ERROR event) passes
/// through unchanged.
#[derive(Clone, Debug)]
pub struct WatchTables {
    kind: KindInfo,
    opts: TableOptions,
    headers_sent: bool,
}

impl WatchTables {
    pub fn new(kind: &KindInfo, opts: TableOptions) -> Self {
        Self {
            kind: *kind,
            opts,
            headers_sent: false,
        }
    }

    /// The `object` of the next event, printed at `now`.
    pub fn event_object(&mut self, object: &Value, now: SystemTime) -> Value {
        let out = if object["kind"] == "Status" {
            object.clone()
        } else {
            let opts = TableOptions {
                now,
                no_headers: self.opts.no_headers || self.headers_sent,
                ..self.opts.clone()
            };
            table_for_object(&self.kind, object, &opts)
        };
        self.headers_sent = true;
        out
    }
}

/// The `autoscaling/v1` Scale of the `scale` subresource, which kube-apiserver prints with its
/// own table (`kubectl get deployment web --subresource=scale`): pass it to [`table`] or
/// [`table_for_object`] with the Scale object.
pub const SCALE: KindInfo = KindInfo {
    group: "autoscaling",
    version: "v1",
    kind: "Scale",
    plural: "scale",
    namespaced: true,
    short_names: &[],
    categories: &[],
    status: false,
    scale: false,
    message: "navarch.api.autoscaling.v1.Scale",
    virtual_kind: true,
};

/// Whether `accept` asks for a Table (see [`table_request`]).
pub fn is_table_request(accept: &str) -> bool {
    table_request(accept).is_some()
}

/// Negotiates `accept` as kube-apiserver does and answers whether the media type it settles on
/// is a Table (`as=Table;g=meta.k8s.io;v=v1` or `v1beta1`, as JSON or YAML). Media ranges are
/// tried by preference (q, then specificity); ranges the facade cannot serve, and conversions
/// other than Table and PartialObjectMetadata(List), are skipped; a plain JSON/YAML range or a
/// PartialObjectMetadata conversion settles it as not a Table.
pub fn table_request(accept: &str) -> Option<TableRequest> {
    for clause in parse_accept(accept) {
        let format = match (clause.kind.as_str(), clause.subtype.as_str()) {
            ("application", "json") | ("application", "*") | ("*", "*") => TableFormat::Json,
            ("application", "yaml") => TableFormat::Yaml,
            _ => continue,
        };
        let param = |name: &str| {
            clause
                .params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let (kind, group, version) = (param("as"), param("g"), param("v"));
        if kind.is_none() && group.is_none() && version.is_none() {
            return None;
        }
        if group != Some("meta.k8s.io") {
            continue;
        }
        let version = match version {
            Some("v1") => TableVersion::V1,
            Some("v1beta1") => TableVersion::V1Beta1,
            _ => continue,
        };
        match kind {
            Some("Table") => return Some(TableRequest { version, format }),
            Some("PartialObjectMetadata" | "PartialObjectMetadataList") => return None,
            _ => continue,
        }
    }
    None
}

/// One media range of an `Accept` header.
struct AcceptClause {
    kind: String,
    subtype: String,
    q: f64,
    params: Vec<(String, String)>,
}

/// goautoneg's `ParseAccept` (which kube-apiserver uses): sorted by q, then specificity.
fn parse_accept(header: &str) -> Vec<AcceptClause> {
    let mut clauses = Vec::new();
    for part in header.split(',') {
        let mut pieces = part.split(';');
        let range = pieces.next().unwrap_or("");
        let halves: Vec<&str> = range.split('/').collect();
        let (kind, subtype) = match halves.as_slice() {
            [t] if t.trim_matches(' ') == "*" => ("*".to_string(), "*".to_string()),
            [t, s] => (
                t.trim_matches(' ').to_string(),
                s.trim_matches(' ').to_string(),
            ),
            _ => continue,
        };
        let mut clause = AcceptClause {
            kind,
            subtype,
            q: 1.0,
            params: Vec::new(),
        };
        for param in pieces {
            let Some((k, v)) = param.split_once('=') else {
                continue;
            };
            let k = k.trim_matches(' ');
            if k == "q" {
                clause.q = v.parse().unwrap_or(0.0);
            } else {
                clause
                    .params
                    .push((k.to_string(), v.trim_matches(' ').to_string()));
            }
        }
        clauses.push(clause);
    }
    clauses.sort_by(|a, b| {
        b.q.partial_cmp(&a.q)
            .unwrap_or(Ordering::Equal)
            .then((a.kind == "*").cmp(&(b.kind == "*")))
            .then((a.subtype == "*").cmp(&(b.subtype == "*")))
    });
    clauses
}

fn row_json(
    kind: &KindInfo,
    printer: Printer,
    obj: &Value,
    now: i128,
    opts: &TableOptions,
) -> Value {
    let row = printer.row(obj, now);
    let object = match opts.include_object {
        IncludeObject::None => Value::Null,
        IncludeObject::Metadata => {
            let metadata = match &obj["metadata"] {
                Value::Null => json!({}),
                m => m.clone(),
            };
            json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": opts.version.api_version(),
                "metadata": metadata,
            })
        }
        IncludeObject::Object => with_type_meta(kind, obj),
    };
    let mut out = Map::new();
    out.insert("cells".into(), Value::Array(row.cells));
    if !row.conditions.is_empty() {
        out.insert("conditions".into(), Value::Array(row.conditions));
    }
    out.insert("object".into(), object);
    Value::Object(out)
}

/// The object with `apiVersion` and `kind` first, filled in when missing.
fn with_type_meta(kind: &KindInfo, obj: &Value) -> Value {
    let Some(fields) = obj.as_object() else {
        return obj.clone();
    };
    if fields.contains_key("apiVersion") && fields.contains_key("kind") {
        return obj.clone();
    }
    let mut out = Map::new();
    out.insert("apiVersion".into(), kind.api_version().into());
    out.insert("kind".into(), kind.kind.into());
    for (k, v) in fields {
        if k != "apiVersion" && k != "kind" {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------------
// Columns

/// A `TableColumnDefinition`.
#[derive(Clone, Copy, Debug)]
struct Column {
    name: &'static str,
    ty: &'static str,
    format: &'static str,
    description: &'static str,
    priority: u8,
}

const fn col(name: &'static str, ty: &'static str, description: &'static str) -> Column {
    Column {
        name,
        ty,
        format: "",
        description,
        priority: 0,
    }
}

/// A priority 1 column: shown by `kubectl get -o wide`.
const fn wide(name: &'static str, ty: &'static str, description: &'static str) -> Column {
    Column {
        name,
        ty,
        format: "",
        description,
        priority: 1,
    }
}

fn columns_json(columns: &[Column]) -> Value {
    Value::Array(
        columns
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.ty,
                    "format": c.format,
                    "description": c.description,
                    "priority": c.priority,
                })
            })
            .collect(),
    )
}

const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating \
    resources, although some resources may allow a client to request the generation of an \
    appropriate name automatically. Name is primarily intended for creation idempotence and \
    configuration definition. Cannot be updated. More info: \
    https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const CREATED_DOC: &str = "CreationTimestamp is a timestamp representing the server time when \
    this object was created. It is not guaranteed to be set in happens-before order across \
    separate operations. Clients may not set this value. It is represented in RFC3339 form and \
    is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: \
    https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const CONTAINERS_DOC: &str = "Names of each container in the template.";
const IMAGES_DOC: &str = "Images referenced by each container in the template.";
const SELECTOR_DOC: &str = "A label query over pods that should match the replica count. \
    More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

const NAME: Column = Column {
    name: "Name",
    ty: "string",
    format: "name",
    description: NAME_DOC,
    priority: 0,
};
const AGE: Column = col("Age", "string", CREATED_DOC);
const CONTAINERS: Column = wide("Containers", "string", CONTAINERS_DOC);
const IMAGES: Column = wide("Images", "string", IMAGES_DOC);
const SELECTOR: Column = wide("Selector", "string", SELECTOR_DOC);

const POD_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Ready",
        "string",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    col(
        "Status",
        "string",
        "The aggregate status of the containers in this pod.",
    ),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last \
         container in this pod has restarted.",
    ),
    AGE,
    wide(
        "IP",
        "string",
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if \
         not yet allocated.",
    ),
    wide(
        "Node",
        "string",
        "NodeName is a request to schedule this pod onto a specific node. If it is non-empty, \
         the scheduler simply schedules this pod onto that node, assuming that it fits resource \
         requirements.",
    ),
    wide(
        "Nominated Node",
        "string",
        "nominatedNodeName is set only when this pod preempts other pods on the node, but it \
         cannot be scheduled right away as preemption victims receive their graceful termination \
         periods. This field does not guarantee that the pod will be scheduled on this node. \
         Scheduler may decide to place the pod elsewhere if other nodes become available sooner. \
         Scheduler may also decide to give the resources on this node to a higher priority pod \
         that is created after preemption. As a result, this field may be different than \
         PodSpec.nodeName when the pod is scheduled.",
    ),
    wide(
        "Readiness Gates",
        "string",
        "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready \
         when all its containers are ready AND all conditions specified in the readiness gates \
         have status equal to \"True\" More info: \
         https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates",
    ),
];

const POD_TEMPLATE_COLUMNS: &[Column] = &[
    NAME,
    col("Containers", "string", CONTAINERS_DOC),
    col("Images", "string", IMAGES_DOC),
    col("Pod Labels", "string", "The labels for the pod template."),
];

const PDB_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Min Available",
        "string",
        "The minimum number of pods that must be available.",
    ),
    col(
        "Max Unavailable",
        "string",
        "The maximum number of pods that may be unavailable.",
    ),
    col(
        "Allowed Disruptions",
        "integer",
        "Calculated number of pods that may be disrupted at this time.",
    ),
    AGE,
];

const REPLICA_SET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "Replicas is the number of desired replicas. This is a pointer to distinguish between \
         explicit zero and unspecified. Defaults to 1.",
    ),
    col(
        "Current",
        "integer",
        "Replicas is the most recently observed number of replicas.",
    ),
    col(
        "Ready",
        "integer",
        "The number of ready replicas for this replica set.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const DAEMON_SET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "The total number of nodes that should be running the daemon pod (including nodes \
         correctly running the daemon pod).",
    ),
    col(
        "Current",
        "integer",
        "The number of nodes that are running at least 1 daemon pod and are supposed to run \
         the daemon pod.",
    ),
    col(
        "Ready",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of the \
         daemon pod running and ready.",
    ),
    col(
        "Up-to-date",
        "integer",
        "The total number of nodes that are running updated daemon pod",
    ),
    col(
        "Available",
        "integer",
        "The number of nodes that should be running the daemon pod and have one or more of the \
         daemon pod running and available (ready for at least spec.minReadySeconds)",
    ),
    col(
        "Node Selector",
        "string",
        "NodeSelector is a selector which must be true for the pod to fit on a node. Selector \
         which must match a node's labels for the pod to be scheduled on that node.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const JOB_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "Status of the job."),
    col(
        "Completions",
        "string",
        "The number of pods which reached phase Succeeded.",
    ),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const CRON_JOB_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Schedule",
        "string",
        "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
    ),
    col(
        "Timezone",
        "string",
        "The time zone name for the given schedule, see \
         https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
    ),
    col(
        "Suspend",
        "boolean",
        "This flag tells the controller to suspend subsequent executions, it does not apply to \
         already started executions. Defaults to false.",
    ),
    col(
        "Active",
        "integer",
        "A list of pointers to currently running jobs.",
    ),
    col(
        "Last Schedule",
        "string",
        "Information when was the last time the job was successfully scheduled.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Type",
        "string",
        "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are \
         ExternalName, ClusterIP, NodePort, and LoadBalancer.",
    ),
    col(
        "Cluster-IP",
        "string",
        "clusterIP is the IP address of the service and is usually assigned randomly.",
    ),
    col(
        "External-IP",
        "string",
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept \
         traffic for this service.",
    ),
    col(
        "Port(s)",
        "string",
        "The list of ports that are exposed by this service.",
    ),
    AGE,
    wide(
        "Selector",
        "string",
        "Route service traffic to pods with label keys and values matching this selector.",
    ),
];

const STATEFUL_SET_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    AGE,
    CONTAINERS,
    IMAGES,
];

const ENDPOINTS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Endpoints",
        "string",
        "The set of all endpoints is the union of all subsets.",
    ),
    AGE,
];

const NODE_ADDRESSES_DOC: &str = "List of addresses reachable to the node.";
const NODE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    wide("Internal-IP", "string", NODE_ADDRESSES_DOC),
    wide("External-IP", "string", NODE_ADDRESSES_DOC),
    wide(
        "OS-Image",
        "string",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    ),
    wide(
        "Kernel-Version",
        "string",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    ),
    wide(
        "Container-Runtime",
        "string",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. \
         containerd://1.4.2).",
    ),
];

const EVENT_COLUMNS: &[Column] = &[
    col(
        "Last Seen",
        "string",
        "The time at which the most recent occurrence of this event was recorded.",
    ),
    col(
        "Type",
        "string",
        "Type of this event (Normal, Warning), new types could be added in the future",
    ),
    col(
        "Reason",
        "string",
        "This should be a short, machine understandable string that gives the reason for the \
         transition into the object's current status.",
    ),
    col("Object", "string", "The object that this event is about."),
    wide(
        "Subobject",
        "string",
        "If referring to a piece of an object instead of an entire object, this string should \
         contain a valid JSON/Go field access statement, such as \
         desiredState.manifest.containers[2].",
    ),
    wide(
        "Source",
        "string",
        "The component reporting this event. Should be a short machine understandable string.",
    ),
    col(
        "Message",
        "string",
        "A human-readable description of the status of this operation.",
    ),
    wide(
        "First Seen",
        "string",
        "The time at which the event was first recorded. (Time of server receipt is in \
         TypeMeta.)",
    ),
    wide(
        "Count",
        "string",
        "The number of times this event has occurred.",
    ),
    Column {
        priority: 1,
        ..NAME
    },
];

const NAMESPACE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the namespace"),
    AGE,
];

const SECRET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Type",
        "string",
        "Used to facilitate programmatic handling of secret data.",
    ),
    col(
        "Data",
        "string",
        "Data contains the secret data. Each key must consist of alphanumeric characters, '-', \
         '_' or '.'.",
    ),
    AGE,
];

const SERVICE_ACCOUNT_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Secrets",
        "string",
        "Secrets is a list of the secrets in the same namespace that pods running using this \
         ServiceAccount are allowed to use.",
    ),
    AGE,
];

const PVC_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Status",
        "string",
        "phase represents the current phase of PersistentVolumeClaim.",
    ),
    col(
        "Volume",
        "string",
        "volumeName is the binding reference to the PersistentVolume backing this claim.",
    ),
    col(
        "Capacity",
        "string",
        "capacity represents the actual resources of the underlying volume.",
    ),
    col(
        "Access Modes",
        "string",
        "accessModes contains the actual access modes the volume backing the PVC has.",
    ),
    col("StorageClass", "string", "StorageClass of the pvc"),
    col(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pvc",
    ),
    AGE,
    wide(
        "VolumeMode",
        "string",
        "volumeMode defines what type of volume is required by the claim. Value of Filesystem \
         is implied when not included in claim spec.",
    ),
];

const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col(
        "Up-to-date",
        "string",
        "Total number of non-terminated pods targeted by this deployment that have the desired \
         template spec.",
    ),
    col(
        "Available",
        "string",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this \
         deployment.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be \
         the ones affected by this deployment.",
    ),
];

const HPA_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Reference",
        "string",
        "scaleTargetRef points to the target resource to scale, and is used to the pods for \
         which metrics should be collected, as well as to actually change the replica count.",
    ),
    col(
        "Targets",
        "string",
        "metrics contains the specifications for which to use to calculate the desired replica \
         count (the maximum replica count across all metrics will be used).",
    ),
    col(
        "MinPods",
        "string",
        "minReplicas is the lower limit for the number of replicas to which the autoscaler can \
         scale down. It defaults to 1 pod.",
    ),
    col(
        "MaxPods",
        "string",
        "maxReplicas is the upper limit for the number of replicas to which the autoscaler can \
         scale up. It cannot be less that minReplicas.",
    ),
    col(
        "Replicas",
        "string",
        "currentReplicas is current number of replicas of pods managed by this autoscaler, as \
         last seen by the autoscaler.",
    ),
    AGE,
];

const CONFIG_MAP_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Data",
        "string",
        "Data contains the configuration data. Each key must consist of alphanumeric \
         characters, '-', '_' or '.'.",
    ),
    AGE,
];

const ROLE_BINDING_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Role",
        "string",
        "RoleRef can reference a Role in the current namespace or a ClusterRole in the global \
         namespace. If the RoleRef cannot be resolved, the Authorizer must return an error.",
    ),
    AGE,
    wide("Users", "string", "Users in the roleBinding"),
    wide("Groups", "string", "Groups in the roleBinding"),
    wide(
        "ServiceAccounts",
        "string",
        "ServiceAccounts in the roleBinding",
    ),
];

const CLUSTER_ROLE_BINDING_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Role",
        "string",
        "RoleRef can only reference a ClusterRole in the global namespace. If the RoleRef \
         cannot be resolved, the Authorizer must return an error.",
    ),
    AGE,
    wide("Users", "string", "Users in the clusterRoleBinding"),
    wide("Groups", "string", "Groups in the clusterRoleBinding"),
    wide(
        "ServiceAccounts",
        "string",
        "ServiceAccounts in the clusterRoleBinding",
    ),
];

const LEASE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Holder",
        "string",
        "holderIdentity contains the identity of the holder of a current lease.",
    ),
    AGE,
];

const CONTROLLER_REVISION_COLUMNS: &[Column] = &[
    NAME,
    col("Controller", "string", "Controller of the object"),
    col(
        "Revision",
        "string",
        "Revision indicates the revision of the state represented by Data.",
    ),
    AGE,
];

const RESOURCE_QUOTA_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Request",
        "string",
        "Request represents a minimum amount of cpu/memory that a container may consume.",
    ),
    col(
        "Limit",
        "string",
        "Limits control the maximum amount of cpu/memory that a container may use independent \
         of contention on the node.",
    ),
    AGE,
];

const PRIORITY_CLASS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Value",
        "integer",
        "value represents the integer value of this priority class. This is the actual priority \
         that pods receive when they have the name of this class in their pod spec.",
    ),
    col(
        "Global-Default",
        "boolean",
        "globalDefault specifies whether this PriorityClass should be considered as the default \
         priority for pods that do not have any priority class.",
    ),
    AGE,
    col(
        "PreemptionPolicy",
        "string",
        "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, \
         PreemptLowerPriority. Defaults to PreemptLowerPriority if unset.",
    ),
];

const ENDPOINT_SLICE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "AddressType",
        "string",
        "addressType specifies the type of address carried by this EndpointSlice. All addresses \
         in this slice must be the same type.",
    ),
    col(
        "Ports",
        "string",
        "ports specifies the list of network ports exposed by each endpoint in this slice.",
    ),
    col(
        "Endpoints",
        "string",
        "endpoints is a list of unique endpoints in this slice.",
    ),
    AGE,
];

/// `printScale`'s columns; its Name column has no `name` format.
const SCALE_COLUMNS: &[Column] = &[
    Column { format: "", ..NAME },
    col(
        "Desired",
        "integer",
        "replicas is the desired number of instances for the scaled object.",
    ),
    col(
        "Available",
        "integer",
        "replicas is the actual number of observed instances of the scaled object.",
    ),
    AGE,
];

/// kube-apiserver's default table (`rest.NewDefaultTableConvertor`) for kinds without a printer.
const DEFAULT_COLUMNS: &[Column] = &[
    NAME,
    Column {
        name: "Created At",
        ty: "date",
        format: "",
        description: CREATED_DOC,
        priority: 0,
    },
];

// ---------------------------------------------------------------------------------------------
// Printers

/// One printer of kube-apiserver, chosen by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Printer {
    Pod,
    PodTemplate,
    PodDisruptionBudget,
    ReplicaSet,
    DaemonSet,
    Job,
    CronJob,
    Service,
    StatefulSet,
    Endpoints,
    Node,
    Event,
    Namespace,
    Secret,
    ServiceAccount,
    PersistentVolumeClaim,
    Deployment,
    HorizontalPodAutoscaler,
    ConfigMap,
    RoleBinding,
    ClusterRoleBinding,
    Lease,
    ControllerRevision,
    ResourceQuota,
    PriorityClass,
    EndpointSlice,
    Scale,
    Default,
}

/// The cells (and row conditions) of one object.
struct Row {
    cells: Vec<Value>,
    conditions: Vec<Value>,
}

impl From<Vec<Value>> for Row {
    fn from(cells: Vec<Value>) -> Self {
        Self {
            cells,
            conditions: Vec::new(),
        }
    }
}

impl Printer {
    fn of(kind: &KindInfo) -> Self {
        match (kind.group, kind.kind) {
            ("", "Pod") => Self::Pod,
            ("", "PodTemplate") => Self::PodTemplate,
            ("policy", "PodDisruptionBudget") => Self::PodDisruptionBudget,
            ("apps", "ReplicaSet") => Self::ReplicaSet,
            ("apps", "DaemonSet") => Self::DaemonSet,
            ("batch", "Job") => Self::Job,
            ("batch", "CronJob") => Self::CronJob,
            ("", "Service") => Self::Service,
            ("apps", "StatefulSet") => Self::StatefulSet,
            ("", "Endpoints") => Self::Endpoints,
            ("", "Node") => Self::Node,
            ("", "Event") => Self::Event,
            ("", "Namespace") => Self::Namespace,
            ("", "Secret") => Self::Secret,
            ("", "ServiceAccount") => Self::ServiceAccount,
            ("", "PersistentVolumeClaim") => Self::PersistentVolumeClaim,
            ("apps", "Deployment") => Self::Deployment,
            ("autoscaling", "HorizontalPodAutoscaler") => Self::HorizontalPodAutoscaler,
            ("", "ConfigMap") => Self::ConfigMap,
            ("rbac.authorization.k8s.io", "RoleBinding") => Self::RoleBinding,
            ("rbac.authorization.k8s.io", "ClusterRoleBinding") => Self::ClusterRoleBinding,
            ("coordination.k8s.io", "Lease") => Self::Lease,
            ("apps", "ControllerRevision") => Self::ControllerRevision,
            ("", "ResourceQuota") => Self::ResourceQuota,
            ("scheduling.k8s.io", "PriorityClass") => Self::PriorityClass,
            ("discovery.k8s.io", "EndpointSlice") => Self::EndpointSlice,
            ("autoscaling", "Scale") => Self::Scale,
            _ => Self::Default,
        }
    }

    fn columns(self) -> &'static [Column] {
        match self {
            Self::Pod => POD_COLUMNS,
            Self::PodTemplate => POD_TEMPLATE_COLUMNS,
            Self::PodDisruptionBudget => PDB_COLUMNS,
            Self::ReplicaSet => REPLICA_SET_COLUMNS,
            Self::DaemonSet => DAEMON_SET_COLUMNS,
            Self::Job => JOB_COLUMNS,
            Self::CronJob => CRON_JOB_COLUMNS,
            Self::Service => SERVICE_COLUMNS,
            Self::StatefulSet => STATEFUL_SET_COLUMNS,
            Self::Endpoints => ENDPOINTS_COLUMNS,
            Self::Node => NODE_COLUMNS,
            Self::Event => EVENT_COLUMNS,
            Self::Namespace => NAMESPACE_COLUMNS,
            Self::Secret => SECRET_COLUMNS,
            Self::ServiceAccount => SERVICE_ACCOUNT_COLUMNS,
            Self::PersistentVolumeClaim => PVC_COLUMNS,
            Self::Deployment => DEPLOYMENT_COLUMNS,
            Self::HorizontalPodAutoscaler => HPA_COLUMNS,
            Self::ConfigMap => CONFIG_MAP_COLUMNS,
            Self::RoleBinding => ROLE_BINDING_COLUMNS,
            Self::ClusterRoleBinding => CLUSTER_ROLE_BINDING_COLUMNS,
            Self::Lease => LEASE_COLUMNS,
            Self::ControllerRevision => CONTROLLER_REVISION_COLUMNS,
            Self::ResourceQuota => RESOURCE_QUOTA_COLUMNS,
            Self::PriorityClass => PRIORITY_CLASS_COLUMNS,
            Self::EndpointSlice => ENDPOINT_SLICE_COLUMNS,
            Self::Scale => SCALE_COLUMNS,
            Self::Default => DEFAULT_COLUMNS,
        }
    }

    fn row(self, obj: &Value, now: i128) -> Row {
        let name = || Value::from(text(&obj["metadata"]["name"]));
        let age = || Value::from(since(now, time_at(&obj["metadata"]["creationTimestamp"])));
        let spec = &obj["spec"];
        let status = &obj["status"];
        match self {
            Self::Pod => pod_row(obj, now),
            Self::PodTemplate => {
                let template = &obj["template"];
                let (names, images) = container_cells(&template["spec"]["containers"]);
                vec![
                    name(),
                    names.into(),
                    images.into(),
                    format_labels(&template["metadata"]["labels"]).into(),
                ]
                .into()
            }
            Self::PodDisruptionBudget => vec![
                name(),
                int_or_string(&spec["minAvailable"]).into(),
                int_or_string(&spec["maxUnavailable"]).into(),
                int(&status["disruptionsAllowed"]).into(),
                age(),
            ]
            .into(),
            Self::ReplicaSet => {
                let (names, images) = container_cells(&spec["template"]["spec"]["containers"]);
                vec![
                    name(),
                    int(&spec["replicas"]).into(),
                    int(&status["replicas"]).into(),
                    int(&status["readyReplicas"]).into(),
                    age(),
                    names.into(),
                    images.into(),
                    format_label_selector(&spec["selector"]).into(),
                ]
                .into()
            }
            Self::DaemonSet => {
                let pod_spec = &spec["template"]["spec"];
                let (names, images) = container_cells(&pod_spec["containers"]);
                vec![
                    name(),
                    int(&status["desiredNumberScheduled"]).into(),
                    int(&status["currentNumberScheduled"]).into(),
                    int(&status["numberReady"]).into(),
                    int(&status["updatedNumberScheduled"]).into(),
                    int(&status["numberAvailable"]).into(),
                    format_labels(&pod_spec["nodeSelector"]).into(),
                    age(),
                    names.into(),
                    images.into(),
                    format_label_selector(&spec["selector"]).into(),
                ]
                .into()
            }
            Self::Job => job_row(obj, now),
            Self::CronJob => {
                let last_schedule = match &status["lastScheduleTime"] {
                    Value::Null => "<none>".to_string(),
                    t => since(now, time_at(t)),
                };
                let time_zone = match &spec["timeZone"] {
                    Value::Null => "<none>",
                    tz => text(tz),
                };
                let suspend = match &spec["suspend"] {
                    Value::Null => "<unset>",
                    v if flag(v) => "True",
                    _ => "False",
                };
                let job_spec = &spec["jobTemplate"]["spec"];
                let (names, images) = container_cells(&job_spec["template"]["spec"]["containers"]);
                vec![
                    name(),
                    text(&spec["schedule"]).into(),
                    time_zone.into(),
                    suspend.into(),
                    list(&status["active"]).len().into(),
                    last_schedule.into(),
                    age(),
                    names.into(),
                    images.into(),
                    format_label_selector(&job_spec["selector"]).into(),
                ]
                .into()
            }
            Self::Service => service_row(obj, now),
            Self::StatefulSet => {
                let (names, images) = container_cells(&spec["template"]["spec"]["containers"]);
                vec![
                    name(),
                    format!(
                        "{}/{}",
                        int(&status["readyReplicas"]),
                        int(&spec["replicas"])
                    )
                    .into(),
                    age(),
                    names.into(),
                    images.into(),
                ]
                .into()
            }
            Self::Endpoints => vec![name(), format_endpoints(obj).into(), age()].into(),
            Self::Node => node_row(obj, now),
            Self::Event => event_row(obj, now),
            Self::Namespace => vec![name(), text(&status["phase"]).into(), age()].into(),
            Self::Secret => vec![
                name(),
                text(&obj["type"]).into(),
                map_len(&obj["data"]).into(),
                age(),
            ]
            .into(),
            Self::ServiceAccount => vec![name(), list(&obj["secrets"]).len().into(), age()].into(),
            Self::PersistentVolumeClaim => pvc_row(obj, now),
            Self::Deployment => {
                let (names, images) = container_cells(&spec["template"]["spec"]["containers"]);
                let selector = label_selector_string(&spec["selector"])
                    .unwrap_or_else(|()| "<invalid>".to_string());
                vec![
                    name(),
                    format!(
                        "{}/{}",
                        int(&status["readyReplicas"]),
                        int(&spec["replicas"])
                    )
                    .into(),
                    int(&status["updatedReplicas"]).into(),
                    int(&status["availableReplicas"]).into(),
                    age(),
                    names.into(),
                    images.into(),
                    selector.into(),
                ]
                .into()
            }
            Self::HorizontalPodAutoscaler => {
                let target = &spec["scaleTargetRef"];
                let min_pods = match &spec["minReplicas"] {
                    Value::Null => "<unset>".to_string(),
                    n => int(n).to_string(),
                };
                vec![
                    name(),
                    format!("{}/{}", text(&target["kind"]), text(&target["name"])).into(),
                    format_hpa_metrics(&spec["metrics"], &status["currentMetrics"]).into(),
                    min_pods.into(),
                    int(&spec["maxReplicas"]).into(),
                    int(&status["currentReplicas"]).into(),
                    age(),
                ]
                .into()
            }
            Self::ConfigMap => vec![
                name(),
                (map_len(&obj["data"]) + map_len(&obj["binaryData"])).into(),
                age(),
            ]
            .into(),
            Self::RoleBinding | Self::ClusterRoleBinding => {
                let role_ref = &obj["roleRef"];
                let (users, groups, service_accounts) = subjects_strings(&obj["subjects"]);
                vec![
                    name(),
                    format!("{}/{}", text(&role_ref["kind"]), text(&role_ref["name"])).into(),
                    age(),
                    users.join(", ").into(),
                    groups.join(", ").into(),
                    service_accounts.join(", ").into(),
                ]
                .into()
            }
            Self::Lease => vec![name(), text(&spec["holderIdentity"]).into(), age()].into(),
            Self::ControllerRevision => vec![
                name(),
                controller_name(obj).into(),
                int(&obj["revision"]).into(),
                age(),
            ]
            .into(),
            Self::ResourceQuota => {
                let (requests, limits) = quota_columns(status);
                vec![name(), requests.into(), limits.into(), age()].into()
            }
            Self::PriorityClass => vec![
                name(),
                int(&obj["value"]).into(),
                flag(&obj["globalDefault"]).into(),
                age(),
                text(&obj["preemptionPolicy"]).into(),
            ]
            .into(),
            Self::EndpointSlice => vec![
                name(),
                text(&obj["addressType"]).into(),
                format_discovery_ports(&obj["ports"]).into(),
                format_discovery_endpoints(&obj["endpoints"]).into(),
                age(),
            ]
            .into(),
            Self::Scale => vec![
                name(),
                int(&spec["replicas"]).into(),
                int(&status["replicas"]).into(),
                age(),
            ]
            .into(),
            Self::Default => vec![
                name(),
                format_rfc3339(time_at(&obj["metadata"]["creationTimestamp"])).into(),
            ]
            .into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Per-kind printers with real logic

/// `printPod`: READY, STATUS (phase, then init and container states, then deletion), RESTARTS
/// with the time of the last restart, and the wide IP/NODE/NOMINATED NODE/READINESS GATES.
fn pod_row(pod: &Value, now: i128) -> Row {
    let spec = &pod["spec"];
    let status = &pod["status"];
    let init_specs = list(&spec["initContainers"]);
    let restartable = |name: &str| {
        init_specs
            .iter()
            .any(|c| text(&c["name"]) == name && text(&c["restartPolicy"]) == "Always")
    };

    let mut restarts = 0i64;
    let mut restartable_init_restarts = 0i64;
    let mut total_containers = list(&spec["containers"]).len();
    let mut ready_containers = 0usize;
    let mut last_restart: Option<i128> = None;
    let mut last_restartable_init_restart: Option<i128> = None;

    let phase = text(&status["phase"]);
    let mut reason = match text(&status["reason"]) {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    for condition in list(&status["conditions"]) {
        if text(&condition["type"]) == "PodScheduled"
            && text(&condition["reason"]) == "SchedulingGated"
        {
            reason = "SchedulingGated".to_string();
        }
    }

    let mut conditions = Vec::new();
    match phase {
        "Succeeded" => conditions.push(json!({
            "type": "Completed",
            "status": "True",
            "reason": "Succeeded",
            "message": "The pod has completed successfully.",
        })),
        "Failed" => conditions.push(json!({
            "type": "Completed",
            "status": "True",
            "reason": "Failed",
            "message": "The pod failed.",
        })),
        _ => {}
    }

    total_containers += init_specs
        .iter()
        .filter(|c| text(&c["restartPolicy"]) == "Always")
        .count();

    let mut initializing = false;
    for (i, container) in list(&status["initContainerStatuses"]).iter().enumerate() {
        let restart_count = int(&container["restartCount"]);
        let finished = last_termination(container);
        restarts += restart_count;
        bump_latest(&mut last_restart, finished);
        let is_restartable = restartable(text(&container["name"]));
        if is_restartable {
            restartable_init_restarts += restart_count;
            bump_latest(&mut last_restartable_init_restart, finished);
        }
        let state = &container["state"];
        let terminated = &state["terminated"];
        let waiting = &state["waiting"];
        if !terminated.is_null() && int(&terminated["exitCode"]) == 0 {
            continue;
        }
        if is_restartable && flag(&container["started"]) {
            if flag(&container["ready"]) {
                ready_containers += 1;
            }
            continue;
        }
        if !terminated.is_null() {
            reason = match text(&terminated["reason"]) {
                "" if int(&terminated["signal"]) != 0 => {
                    format!("Init:Signal:{}", int(&terminated["signal"]))
                }
                "" => format!("Init:ExitCode:{}", int(&terminated["exitCode"])),
                r => format!("Init:{r}"),
            };
        } else if !waiting.is_null()
            && !text(&waiting["reason"]).is_empty()
            && text(&waiting["reason"]) != "PodInitializing"
        {
            reason = format!("Init:{}", text(&waiting["reason"]));
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(&status["conditions"], "Initialized") {
        restarts = restartable_init_restarts;
        last_restart = last_restartable_init_restart;
        let mut has_running = false;
        for container in list(&status["containerStatuses"]).iter().rev() {
            restarts += int(&container["restartCount"]);
            bump_latest(&mut last_restart, last_termination(container));
            let state = &container["state"];
            let terminated = &state["terminated"];
            let waiting = &state["waiting"];
            if !waiting.is_null() && !text(&waiting["reason"]).is_empty() {
                reason = text(&waiting["reason"]).to_string();
            } else if !terminated.is_null() && !text(&terminated["reason"]).is_empty() {
                reason = text(&terminated["reason"]).to_string();
            } else if !terminated.is_null() {
                reason = match int(&terminated["signal"]) {
                    0 => format!("ExitCode:{}", int(&terminated["exitCode"])),
                    signal => format!("Signal:{signal}"),
                };
            } else if flag(&container["ready"]) && !state["running"].is_null() {
                has_running = true;
                ready_containers += 1;
            }
        }
        // A pod whose finished container left the others running is still Running.
        if reason == "Completed" && has_running {
            reason = if condition_true(&status["conditions"], "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    let deleting = !pod["metadata"]["deletionTimestamp"].is_null();
    if deleting && text(&status["reason"]) == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Failed" && phase != "Succeeded" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
        _ => restarts.to_string(),
    };

    let mut pod_ip = match list(&status["podIPs"]).first() {
        Some(ip) => text(&ip["ip"]),
        None => text(&status["podIP"]),
    };
    if pod_ip.is_empty() {
        pod_ip = "<none>";
    }
    let readiness_gates = list(&spec["readinessGates"]);
    let gates = if readiness_gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = list(&status["conditions"]);
        let true_count = readiness_gates
            .iter()
            .filter(|gate| {
                let wanted = text(&gate["conditionType"]);
                conditions
                    .iter()
                    .find(|c| text(&c["type"]) == wanted)
                    .is_some_and(|c| text(&c["status"]) == "True")
            })
            .count();
        format!("{true_count}/{}", readiness_gates.len())
    };

    Row {
        cells: vec![
            text(&pod["metadata"]["name"]).into(),
            format!("{ready_containers}/{total_containers}").into(),
            reason.into(),
            restarts_cell.into(),
            since(now, time_at(&pod["metadata"]["creationTimestamp"])).into(),
            pod_ip.into(),
            or_none(text(&spec["nodeName"])).into(),
            or_none(text(&status["nominatedNodeName"])).into(),
            gates.into(),
        ],
        conditions,
    }
}

/// When the container last terminated (`lastState.terminated.finishedAt`).
fn last_termination(container: &Value) -> Option<i128> {
    time_at(&container["lastState"]["terminated"]["finishedAt"])
}

/// Keeps the later of two times; absent counts as Go's zero time.
fn bump_latest(latest: &mut Option<i128>, candidate: Option<i128>) {
    if let Some(t) = candidate
        && latest.is_none_or(|l| l < t)
    {
        *latest = Some(t);
    }
}

/// Whether the condition of type `ty` (the first of that type) is `True`.
fn condition_true(conditions: &Value, ty: &str) -> bool {
    list(conditions)
        .iter()
        .find(|c| text(&c["type"]) == ty)
        .is_some_and(|c| text(&c["status"]) == "True")
}

/// `printJob`: STATUS from the conditions, COMPLETIONS and DURATION.
fn job_row(job: &Value, now: i128) -> Row {
    let spec = &job["spec"];
    let status = &job["status"];
    let succeeded = int(&status["succeeded"]);
    let completions = match &spec["completions"] {
        Value::Null => match int(&spec["parallelism"]) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
        c => format!("{succeeded}/{}", int(c)),
    };
    let duration = match (
        time_at(&status["startTime"]),
        time_at(&status["completionTime"]),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration(now - start),
        (Some(start), Some(end)) => human_duration(end - start),
    };
    let conditions = &status["conditions"];
    let job_condition = |ty: &str| condition_true(conditions, ty);
    let state = if job_condition("Complete") {
        "Complete"
    } else if job_condition("Failed") {
        "Failed"
    } else if !job["metadata"]["deletionTimestamp"].is_null() {
        "Terminating"
    } else if job_condition("Suspended") {
        "Suspended"
    } else if job_condition("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = container_cells(&spec["template"]["spec"]["containers"]);
    vec![
        text(&job["metadata"]["name"]).into(),
        state.into(),
        completions.into(),
        duration.into(),
        since(now, time_at(&job["metadata"]["creationTimestamp"])).into(),
        names.into(),
        images.into(),
        format_label_selector(&spec["selector"]).into(),
    ]
    .into()
}

/// `printService`: TYPE, CLUSTER-IP, EXTERNAL-IP by type, PORT(S), and the wide SELECTOR.
fn service_row(svc: &Value, now: i128) -> Row {
    let spec = &svc["spec"];
    let svc_type = text(&spec["type"]);
    let cluster_ip = match list(&spec["clusterIPs"]).first() {
        Some(ip) => text(ip),
        None => text(&spec["clusterIP"]),
    };
    let cluster_ip = or_none(cluster_ip);
    let external_ips: Vec<&str> = list(&spec["externalIPs"]).iter().map(text).collect();
    let external_ip = match svc_type {
        "ClusterIP" | "NodePort" if external_ips.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external_ips.join(","),
        "LoadBalancer" => {
            let mut ingress: Vec<&str> = list(&svc["status"]["loadBalancer"]["ingress"])
                .iter()
                .filter_map(|i| match (text(&i["ip"]), text(&i["hostname"])) {
                    ("", "") => None,
                    ("", host) => Some(host),
                    (ip, _) => Some(ip),
                })
                .collect();
            ingress.sort_unstable();
            ingress.dedup();
            if !external_ips.is_empty() {
                ingress.extend(external_ips);
                ingress.join(",")
            } else if !ingress.is_empty() {
                ingress.join(",")
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => text(&spec["externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = list(&spec["ports"])
        .iter()
        .map(|p| {
            let (port, node_port, protocol) =
                (int(&p["port"]), int(&p["nodePort"]), text(&p["protocol"]));
            if node_port > 0 {
                format!("{port}:{node_port}/{protocol}")
            } else {
                format!("{port}/{protocol}")
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    };
    vec![
        text(&svc["metadata"]["name"]).into(),
        svc_type.into(),
        cluster_ip.into(),
        external_ip.into(),
        ports.into(),
        since(now, time_at(&svc["metadata"]["creationTimestamp"])).into(),
        format_labels(&spec["selector"]).into(),
    ]
    .into()
}

/// `printNode`: STATUS from the Ready condition and `unschedulable`, ROLES from labels.
fn node_row(node: &Value, now: i128) -> Row {
    let status = &node["status"];
    // The last condition of a type wins, as in the printer's map.
    let ready = list(&status["conditions"])
        .iter()
        .rev()
        .find(|c| text(&c["type"]) == "Ready");
    let mut states = vec![match ready {
        Some(c) if text(&c["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if flag(&node["spec"]["unschedulable"]) {
        states.push("SchedulingDisabled");
    }

    let mut roles: Vec<&str> = Vec::new();
    if let Some(labels) = node["metadata"]["labels"].as_object() {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.push(role);
                }
            } else if k == "kubernetes.io/role" && !text(v).is_empty() {
                roles.push(text(v));
            }
        }
    }
    roles.sort_unstable();
    roles.dedup();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };

    let info = &status["nodeInfo"];
    let address = |ty: &str| {
        list(&status["addresses"])
            .iter()
            .find(|a| text(&a["type"]) == ty)
            .map_or("<none>", |a| text(&a["address"]))
    };
    let or_unknown = |s: &str| -> Value {
        if s.is_empty() {
            "<unknown>".into()
        } else {
            s.into()
        }
    };
    vec![
        text(&node["metadata"]["name"]).into(),
        states.join(",").into(),
        roles.into(),
        since(now, time_at(&node["metadata"]["creationTimestamp"])).into(),
        text(&info["kubeletVersion"]).into(),
        address("InternalIP").into(),
        address("ExternalIP").into(),
        or_unknown(text(&info["osImage"])),
        or_unknown(text(&info["kernelVersion"])),
        or_unknown(text(&info["containerRuntimeVersion"])),
    ]
    .into()
}

/// `printEvent` (wide, as the server prints it).
fn event_row(ev: &Value, now: i128) -> Row {
    let first_seen = match time_at(&ev["firstTimestamp"]) {
        Some(t) => human_duration(now - t),
        None => since(now, time_at(&ev["eventTime"])),
    };
    let mut last_seen = match time_at(&ev["lastTimestamp"]) {
        Some(t) => human_duration(now - t),
        None => first_seen.clone(),
    };
    let series = &ev["series"];
    let count = if !series.is_null() {
        last_seen = since(now, time_at(&series["lastObservedTime"]));
        int(&series["count"])
    } else {
        match int(&ev["count"]) {
            // Singleton events don't have a count set in the new API.
            0 => 1,
            n => n,
        }
    };
    let involved = &ev["involvedObject"];
    let kind = text(&involved["kind"]).to_lowercase();
    let target = match text(&involved["name"]) {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    let source = &ev["source"];
    let component = first_non_empty(text(&source["component"]), text(&ev["reportingComponent"]));
    let instance = first_non_empty(text(&source["host"]), text(&ev["reportingInstance"]));
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        last_seen.into(),
        text(&ev["type"]).into(),
        text(&ev["reason"]).into(),
        target.into(),
        text(&involved["fieldPath"]).into(),
        source.into(),
        text(&ev["message"]).trim().into(),
        first_seen.into(),
        count.into(),
        text(&ev["metadata"]["name"]).into(),
    ]
    .into()
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() { b } else { a }
}

/// `printPersistentVolumeClaim`.
fn pvc_row(pvc: &Value, now: i128) -> Row {
    let spec = &pvc["spec"];
    let status = &pvc["status"];
    let phase = if pvc["metadata"]["deletionTimestamp"].is_null() {
        text(&status["phase"])
    } else {
        "Terminating"
    };
    let volume = text(&spec["volumeName"]);
    let (capacity, access_modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(&status["capacity"]["storage"]),
            access_modes(&status["accessModes"]),
        )
    };
    let class = match &pvc["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"] {
        Value::String(class) => class.as_str(),
        _ => text(&spec["storageClassName"]),
    };
    let unset = |v: &Value| match v {
        Value::Null => "<unset>".to_string(),
        v => text(v).to_string(),
    };
    vec![
        text(&pvc["metadata"]["name"]).into(),
        phase.into(),
        volume.into(),
        capacity.into(),
        access_modes.into(),
        class.into(),
        unset(&spec["volumeAttributesClassName"]).into(),
        since(now, time_at(&pvc["metadata"]["creationTimestamp"])).into(),
        unset(&spec["volumeMode"]).into(),
    ]
    .into()
}

/// `GetAccessModesAsString`: `RWO,ROX,RWX,RWOP`, in that order, each once.
fn access_modes(modes: &Value) -> String {
    let modes: Vec<&str> = list(modes).iter().map(text).collect();
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| modes.contains(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// `formatHPAMetrics`: `cpu: 40%/80%`, at most two, then `+ N more...`.
fn format_hpa_metrics(specs: &Value, statuses: &Value) -> String {
    let specs = list(specs);
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let statuses = list(statuses);
    let current_of = |i: usize, field: &str| -> Option<&Value> {
        statuses
            .get(i)
            .map(|s| &s[field])
            .filter(|s| !s.is_null())
            .map(|s| &s["current"])
    };
    let mut entries: Vec<String> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let entry = match text(&spec["type"]) {
            "External" | "Object" => {
                let field = if text(&spec["type"]) == "External" {
                    "external"
                } else {
                    "object"
                };
                let target = &spec[field]["target"];
                if !target["averageValue"].is_null() {
                    let current = current_of(i, field)
                        .map(|c| &c["averageValue"])
                        .filter(|v| !v.is_null())
                        .map_or("<unknown>".to_string(), quantity);
                    format!("{current}/{} (avg)", quantity_ptr(&target["averageValue"]))
                } else {
                    let current = current_of(i, field)
                        .map_or("<unknown>".to_string(), |c| quantity_ptr(&c["value"]));
                    format!("{current}/{}", quantity_ptr(&target["value"]))
                }
            }
            "Pods" => {
                let current = current_of(i, "pods").map_or("<unknown>".to_string(), |c| {
                    quantity_ptr(&c["averageValue"])
                });
                format!(
                    "{current}/{}",
                    quantity_ptr(&spec["pods"]["target"]["averageValue"])
                )
            }
            "Resource" | "ContainerResource" => {
                let field = if text(&spec["type"]) == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let source = &spec[field];
                let target = &source["target"];
                let resource = text(&source["name"]);
                if !target["averageValue"].is_null() {
                    let current = current_of(i, field).map_or("<unknown>".to_string(), |c| {
                        quantity_ptr(&c["averageValue"])
                    });
                    format!(
                        "{resource}: {current}/{}",
                        quantity_ptr(&target["averageValue"])
                    )
                } else {
                    let current = current_of(i, field)
                        .map(|c| &c["averageUtilization"])
                        .filter(|v| !v.is_null())
                        .map_or("<unknown>".to_string(), |u| format!("{}%", int(u)));
                    let target = match &target["averageUtilization"] {
                        Value::Null => "<auto>".to_string(),
                        u => format!("{}%", int(u)),
                    };
                    format!("{resource}: {current}/{target}")
                }
            }
            _ => "<unknown type>".to_string(),
        };
        entries.push(entry);
    }
    const MAX: usize = 2;
    let count = entries.len();
    if count > MAX {
        entries.truncate(MAX);
        format!("{} + {} more...", entries.join(", "), count - MAX)
    } else {
        entries.join(", ")
    }
}

/// `rbac.SubjectsStrings`: users, groups and `namespace/name` service accounts.
fn subjects_strings(subjects: &Value) -> (Vec<&str>, Vec<&str>, Vec<String>) {
    let (mut users, mut groups, mut service_accounts) = (Vec::new(), Vec::new(), Vec::new());
    for subject in list(subjects) {
        let name = text(&subject["name"]);
        match text(&subject["kind"]) {
            "ServiceAccount" => {
                service_accounts.push(format!("{}/{name}", text(&subject["namespace"])));
            }
            "User" => users.push(name),
            "Group" => groups.push(name),
            _ => {}
        }
    }
    (users, groups, service_accounts)
}

/// `daemonset.apps/name` for the controlling owner, `<none>` without one.
fn controller_name(obj: &Value) -> String {
    let Some(owner) = list(&obj["metadata"]["ownerReferences"])
        .iter()
        .find(|r| flag(&r["controller"]))
    else {
        return "<none>".to_string();
    };
    let api_version = text(&owner["apiVersion"]);
    let group = match api_version.split_once('/') {
        Some((group, _)) => group,
        None => "",
    };
    let kind = text(&owner["kind"]);
    let name = text(&owner["name"]);
    if group.is_empty() && kind.is_empty() {
        return name.to_string();
    }
    let group_kind = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    format!("{}/{name}", group_kind.to_lowercase())
}

/// `printResourceQuota`'s REQUEST and LIMIT: `resource: used/hard` for each hard limit, sorted,
/// `limits.*` in the second column.
fn quota_columns(status: &Value) -> (String, String) {
    let mut requests = Vec::new();
    let mut limits = Vec::new();
    if let Some(hard) = status["hard"].as_object() {
        let mut resources: Vec<&String> = hard.keys().collect();
        resources.sort();
        for resource in resources {
            let used = quantity(&status["used"][resource.as_str()]);
            let entry = format!("{resource}: {used}/{}", quantity(&hard[resource.as_str()]));
            match resource.split_once('.') {
                Some(("limits", _)) => limits.push(entry),
                _ => requests.push(entry),
            }
        }
    }
    (requests.join(", "), limits.join(", "))
}

/// `formatEndpoints`: up to three `ip:port`, then `+ N more...`; `<none>` without subsets.
fn format_endpoints(ep: &Value) -> String {
    let subsets = list(&ep["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 3;
    let mut entries: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for subset in subsets {
        let addresses = list(&subset["addresses"]);
        let ports = list(&subset["ports"]);
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addresses.len();
            for address in addresses {
                if entries.len() == MAX {
                    more = true;
                    break;
                }
                entries.push(text(&address["ip"]).to_string());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for address in addresses {
                if entries.len() == MAX {
                    more = true;
                    break;
                }
                entries.push(join_host_port(text(&address["ip"]), int(&port["port"])));
            }
        }
    }
    let joined = entries.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

/// Go's `net.JoinHostPort`: IPv6 hosts in brackets.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `formatDiscoveryPorts`: the port number, else its name, else `*`.
fn format_discovery_ports(ports: &Value) -> String {
    let entries = list(ports).iter().map(|p| match (&p["port"], &p["name"]) {
        (Value::Null, Value::Null) => "*".to_string(),
        (Value::Null, name) => text(name).to_string(),
        (port, _) => int(port).to_string(),
    });
    list_with_more(entries)
}

/// `formatDiscoveryEndpoints`: every address of every endpoint.
fn format_discovery_endpoints(endpoints: &Value) -> String {
    let entries = list(endpoints)
        .iter()
        .flat_map(|e| list(&e["addresses"]))
        .map(|a| text(a).to_string());
    list_with_more(entries)
}

/// `listWithMoreString` with a maximum of three: `a,b,c + 2 more...`, `<unset>` when empty.
fn list_with_more(entries: impl Iterator<Item = String>) -> String {
    const MAX: usize = 3;
    let mut shown = Vec::new();
    let mut count = 0usize;
    for entry in entries {
        if shown.len() < MAX {
            shown.push(entry);
        }
        count += 1;
    }
    let joined = shown.join(",");
    if count > MAX {
        format!("{joined} + {} more...", count - MAX)
    } else if joined.is_empty() {
        "<unset>".to_string()
    } else {
        joined
    }
}

/// `layoutContainerCells`: names and images, comma-separated.
fn container_cells(containers: &Value) -> (String, String) {
    let containers = list(containers);
    let names: Vec<&str> = containers.iter().map(|c| text(&c["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(&c["image"])).collect();
    (names.join(","), images.join(","))
}

/// `labels.FormatLabels`: `a=b,c=d` sorted by key, `<none>` when empty.
fn format_labels(labels: &Value) -> String {
    let Some(labels) = labels.as_object().filter(|l| !l.is_empty()) else {
        return "<none>".to_string();
    };
    let mut pairs: Vec<(&String, &str)> = labels.iter().map(|(k, v)| (k, text(v))).collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `metav1.FormatLabelSelector`: the selector's string, `<none>` when empty, `<error>` when
/// invalid.
fn format_label_selector(selector: &Value) -> String {
    match label_selector_string(selector) {
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s,
        Err(()) => "<error>".to_string(),
    }
}

/// `LabelSelectorAsSelector(selector).String()`: requirements sorted by key; an absent or
/// empty selector is "".
fn label_selector_string(selector: &Value) -> Result<String, ()> {
    let mut requirements = Vec::new();
    if let Some(labels) = selector["matchLabels"].as_object() {
        for (key, value) in labels {
            let value = text(value);
            if !is_qualified_name(key).is_empty() || !is_valid_label_value(value).is_empty() {
                return Err(());
            }
            requirements.push(Requirement {
                key: key.clone(),
                operator: Operator::Equals,
                values: vec![value.to_string()],
            });
        }
    }
    for expr in list(&selector["matchExpressions"]) {
        let key = text(&expr["key"]);
        let values: Vec<String> = list(&expr["values"])
            .iter()
            .map(|v| text(v).to_string())
            .collect();
        let operator = match text(&expr["operator"]) {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            _ => return Err(()),
        };
        let counts_ok = match operator {
            Operator::In | Operator::NotIn => !values.is_empty(),
            _ => values.is_empty(),
        };
        if !counts_ok
            || !is_qualified_name(key).is_empty()
            || values.iter().any(|v| !is_valid_label_value(v).is_empty())
        {
            return Err(());
        }
        requirements.push(Requirement {
            key: key.to_string(),
            operator,
            values,
        });
    }
    requirements.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(requirements
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(","))
}

/// An `IntOrString` as text; `N/A` when unset (PodDisruptionBudget).
fn int_or_string(v: &Value) -> String {
    match v {
        Value::Null => "N/A".to_string(),
        Value::String(s) => s.clone(),
        other => int(other).to_string(),
    }
}

/// A quantity in canonical form; an absent one is zero, as a Go `Quantity` value.
fn quantity(v: &Value) -> String {
    let raw = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return "0".to_string(),
    };
    raw.parse::<Quantity>()
        .map_or(raw, |q: Quantity| q.to_string())
}

/// A `*Quantity`: `<nil>` when absent.
fn quantity_ptr(v: &Value) -> String {
    if v.is_null() {
        "<nil>".to_string()
    } else {
        quantity(v)
    }
}

fn or_none(s: &str) -> &str {
    if s.is_empty() { "<none>" } else { s }
}

// ---------------------------------------------------------------------------------------------
// JSON access: absent fields read as Go's zero values.

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .unwrap_or(0),
        Value::String(s) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

fn flag(v: &Value) -> bool {
    v.as_bool().unwrap_or(false)
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

fn map_len(v: &Value) -> usize {
    v.as_object().map_or(0, Map::len)
}

// ---------------------------------------------------------------------------------------------
// Time

const NANOS_PER_SEC: i128 = 1_000_000_000;

fn unix_nanos(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// A `metav1.Time`/`MicroTime` field in nanoseconds since the epoch; `None` when absent (Go's
/// zero time) or unparsable.
fn time_at(v: &Value) -> Option<i128> {
    v.as_str().and_then(parse_rfc3339)
}

/// `translateTimestampSince`: the age of `t`, `<unknown>` for the zero time.
fn since(now: i128, t: Option<i128>) -> String {
    match t {
        Some(t) => human_duration(now - t),
        None => "<unknown>".to_string(),
    }
}

/// `duration.HumanDuration` of apimachinery: ~2-3 significant figures (`45s`, `3m20s`, `2d3h`,
/// `5y`); up to one second in the future is `0s`, further is `<invalid>`.
fn human_duration(nanos: i128) -> String {
    let seconds = nanos / NANOS_PER_SEC;
    if seconds < -1 {
        return "<invalid>".to_string();
    } else if seconds < 0 {
        return "0s".to_string();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        }
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        }
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

/// Parses RFC 3339 (`2024-05-01T12:00:00Z`, `…00.123456Z`, `…00+02:00`) to nanoseconds since
/// the epoch.
fn parse_rfc3339(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    let digits = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let sep = |at: usize, options: &[u8]| b.get(at).is_some_and(|c| options.contains(c));
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut i = 19;
    let mut frac_nanos: i128 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let mut scale = 100_000_000i128;
        for &c in &b[start..i.min(start + 9)] {
            frac_nanos += i128::from(c - b'0') * scale;
            scale /= 10;
        }
    }
    let offset_secs = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (h, m) = (digits(i + 1, 2)?, digits(i + 4, 2)?);
            let offset = h * 3600 + m * 60;
            if *sign == b'+' { offset } else { -offset }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(i128::from(secs) * NANOS_PER_SEC + frac_nanos)
}

/// Go's `t.UTC().Format(time.RFC3339)`; the zero time for `None`.
fn format_rfc3339(t: Option<i128>) -> String {
    let Some(nanos) = t else {
        return "0001-01-01T00:00:00Z".to_string();
    };
    let secs = nanos.div_euclid(NANOS_PER_SEC) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i128 = NANOS_PER_SEC;

    #[test]
    fn human_duration_matches_apimachinery() {
        let cases: &[(i128, &str)] = &[
            (-3 * S, "<invalid>"),
            (-2 * S, "<invalid>"),
            (-S - S / 2, "0s"),
            (-S, "0s"),
            (0, "0s"),
            (45 * S, "45s"),
            (119 * S, "119s"),
            (120 * S, "2m"),
            (200 * S, "3m20s"),
            (599 * S, "9m59s"),
            (600 * S, "10m"),
            (179 * 60 * S, "179m"),
            (3 * 3600 * S, "3h"),
            (7 * 3600 * S + 59 * 60 * S, "7h59m"),
            (8 * 3600 * S, "8h"),
            (47 * 3600 * S, "47h"),
            (48 * 3600 * S, "2d"),
            (51 * 3600 * S, "2d3h"),
            (8 * 24 * 3600 * S, "8d"),
            (729 * 24 * 3600 * S, "729d"),
            (730 * 24 * 3600 * S, "2y"),
            (731 * 24 * 3600 * S, "2y1d"),
            (5 * 365 * 24 * 3600 * S, "5y"),
            (9 * 365 * 24 * 3600 * S + 40 * 24 * 3600 * S, "9y"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(*d), *want, "{d}ns");
        }
    }

    #[test]
    fn rfc3339_round_trips_and_rejects_garbage() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-02-29T23:59:59.5Z"),
            Some(1_709_251_199 * S + S / 2)
        );
        assert_eq!(
            parse_rfc3339("2024-03-01T01:00:00+02:00"),
            parse_rfc3339("2024-02-29T23:00:00Z")
        );
        assert_eq!(
            parse_rfc3339("2024-06-01T12:00:00.123456Z"),
            Some(1_717_243_200 * S + 123_456_000)
        );
        for bad in [
            "",
            "2024-02-30T00:00:00Z",
            "2024-01-01 00:00:00",
            "2024-01-01T00:00:00.Z",
            "yesterday",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(
            format_rfc3339(parse_rfc3339("2023-12-31T22:30:00-02:00")),
            "2024-01-01T00:30:00Z"
        );
        assert_eq!(
            format_rfc3339(parse_rfc3339("1969-12-31T23:59:59Z")),
            "1969-12-31T23:59:59Z"
        );
        assert_eq!(format_rfc3339(None), "0001-01-01T00:00:00Z");
    }

    #[test]
    fn label_selectors_format_like_apimachinery() {
        let selector = json!({
            "matchLabels": {"tier": "web", "app": "shop"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "canary"]},
                {"key": "legacy", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "NotIn", "values": ["b"]},
                {"key": "gpu", "operator": "Exists"},
            ],
        });
        assert_eq!(
            format_label_selector(&selector),
            "app=shop,env in (canary,prod),gpu,!legacy,tier=web,zone notin (b)"
        );
        assert_eq!(format_label_selector(&Value::Null), "<none>");
        assert_eq!(format_label_selector(&json!({})), "<none>");
        assert_eq!(
            format_label_selector(&json!({"matchExpressions": [{"key": "a", "operator": "In"}]})),
            "<error>"
        );
        assert_eq!(format_labels(&json!({"b": "2", "a": "1"})), "a=1,b=2");
        assert_eq!(format_labels(&json!({})), "<none>");
    }

    #[test]
    fn accept_headers_sort_by_preference() {
        let clauses = parse_accept("text/*;q=0.5, */*;q=0.9, application/json;as=Table;v=v1");
        let order: Vec<String> = clauses
            .iter()
            .map(|c| format!("{}/{}", c.kind, c.subtype))
            .collect();
        assert_eq!(order, ["application/json", "*/*", "text/*"]);
        assert_eq!(
            clauses[0].params[0],
            ("as".to_string(), "Table".to_string())
        );
    }
}
