use serde_json::{json, Value};

use super::*;

/// Ten twins shaped as IoT Hub returns them, covering strings, numbers (int and float), nested
/// tags, null values, missing properties, arrays, objects and mixed-case names.
fn twins() -> Vec<Value> {
    let twin = |n: u32,
                status: &str,
                conn: &str,
                edge: bool,
                tags: Option<Value>,
                desired: Value,
                reported: Value| {
        let mut t = json!({
            "deviceId": format!("d{n:02}"),
            "etag": format!("AAAAAAAAAA{n}="),
            "version": n,
            "status": status,
            "statusUpdateTime": "0001-01-01T00:00:00Z",
            "connectionState": conn,
            "lastActivityTime": "2026-11-26T00:00:00Z",
            "cloudToDeviceMessageCount": 0,
            "authenticationType": "sas",
            "capabilities": { "iotEdge": edge },
            "properties": { "desired": desired, "reported": reported }
        });
        if let Some(tags) = tags {
            t["tags"] = tags;
        }
        t
    };
    vec![
        twin(
            1,
            "enabled",
            "Connected",
            false,
            Some(
                json!({"location": {"region": "US", "city": "Seattle"}, "group": "even", "floor": 3, "building": "B1"}),
            ),
            json!({"temp": 21, "mode": "eco", "$version": 4}),
            json!({"temp": 22.5, "fw": "1.2.0", "online": true}),
        ),
        twin(
            2,
            "enabled",
            "Disconnected",
            false,
            Some(
                json!({"location": {"region": "EU", "city": "Paris"}, "group": "odd", "floor": 1}),
            ),
            json!({"temp": 19}),
            json!({"temp": 18, "fw": "1.1.9", "online": false}),
        ),
        twin(
            3,
            "disabled",
            "Connected",
            true,
            Some(
                json!({"location": {"region": "US", "city": "Austin"}, "group": "even", "floor": 10, "nickname": null}),
            ),
            json!({}),
            json!({"fw": "2.0.0"}),
        ),
        twin(
            4,
            "enabled",
            "Disconnected",
            false,
            Some(json!({"group": "odd", "Group": "CASE"})),
            json!({}),
            json!({}),
        ),
        twin(
            5,
            "enabled",
            "Connected",
            false,
            None,
            json!({"mode": null}),
            json!({"temp": 30}),
        ),
        twin(
            6,
            "enabled",
            "Connected",
            false,
            Some(json!({"floor": "3", "group": "even", "labels": ["a", "b"]})),
            json!({}),
            json!({"temp": -5}),
        ),
        twin(
            7,
            "enabled",
            "Disconnected",
            false,
            Some(json!({"floor": 3.0, "group": "even", "meta": {"owner": "ops"}})),
            json!({}),
            json!({"temp": 1000.0}),
        ),
        twin(
            8,
            "disabled",
            "Disconnected",
            false,
            Some(json!({"group": "odd", "name": "O'Brien \"quoted\"", "unicode": "café"})),
            json!({}),
            json!({}),
        ),
        twin(
            9,
            "enabled",
            "Connected",
            false,
            Some(json!({"group": "even", "flag": true, "count": 7})),
            json!({}),
            json!({}),
        ),
        twin(
            10,
            "enabled",
            "Connected",
            false,
            Some(json!({"group": "odd", "flag": false, "count": -7, "prefix": "Sensor-01"})),
            json!({}),
            json!({}),
        ),
    ]
}

const ALL: &[&str] = &[
    "d01", "d02", "d03", "d04", "d05", "d06", "d07", "d08", "d09", "d10",
];
const EVEN: &[&str] = &["d01", "d03", "d06", "d07", "d09"];
const ODD: &[&str] = &["d02", "d04", "d08", "d10"];
const NONE: &[&str] = &[];

fn selected(condition: &Condition, docs: &[Value]) -> Vec<String> {
    docs.iter()
        .filter(|d| condition.matches(d))
        .map(|d| d["deviceId"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn conditions_select_expected_devices() {
    let cases: &[(&str, &[&str])] = &[
        ("*", ALL),
        ("  *  ", ALL),
        ("true", ALL),
        ("false", NONE),
        ("1 = 1", ALL),
        ("null = null", ALL),
        // strings and case rules
        ("tags.group = 'even'", EVEN),
        ("tags.group = \"odd\"", ODD),
        ("tags.group != 'even'", ODD),
        ("tags.group <> 'even'", ODD),
        ("tags.location.region = 'US'", &["d01", "d03"]),
        ("TAGS.location.region = 'US'", &["d01", "d03"]),
        ("Tags.Location.Region = 'US'", NONE),
        ("tags.Group = 'CASE'", &["d04"]),
        ("tags.group = 'CASE'", NONE),
        ("deviceId = 'd03'", &["d03"]),
        ("DeviceId = 'd03'", &["d03"]),
        ("DEVICEID IN ['d01', 'd02']", &["d01", "d02"]),
        ("STATUS = 'disabled'", &["d03", "d08"]),
        (
            "connectionState = 'Connected' AND status = 'enabled'",
            &["d01", "d05", "d06", "d09", "d10"],
        ),
        ("capabilities.iotEdge = true", &["d03"]),
        ("Capabilities.IOTEDGE = true", &["d03"]),
        ("version > 8", &["d09", "d10"]),
        ("etag = 'AAAAAAAAAA4='", &["d04"]),
        ("tags.group < 'f'", EVEN),
        ("tags.name = 'O\\'Brien \"quoted\"'", &["d08"]),
        ("tags.name = \"O'Brien \\\"quoted\\\"\"", &["d08"]),
        ("tags.unicode = 'caf\\u00e9'", &["d08"]),
        ("tags.unicode = 'café'", &["d08"]),
        ("tags['location']['region'] = 'EU'", &["d02"]),
        ("tags[\"location\"].city = 'Paris'", &["d02"]),
        ("tags.labels[1] = 'b'", &["d06"]),
        // desired / reported
        ("properties.desired.temp = 21", &["d01"]),
        ("PROPERTIES.DESIRED.temp = 21", &["d01"]),
        ("properties.desired.Temp = 21", NONE),
        ("properties.desired.$version = 4", &["d01"]),
        ("properties.reported.temp > 20", &["d01", "d05", "d07"]),
        (
            "properties.reported.temp >= 18 AND properties.reported.temp <= 30",
            &["d01", "d02", "d05"],
        ),
        ("properties.reported.temp < 0", &["d06"]),
        ("properties.reported.temp = 1e3", &["d07"]),
        ("properties.reported.temp = 1000", &["d07"]),
        ("properties.reported.temp = 22.5", &["d01"]),
        ("properties.reported.online = true", &["d01"]),
        // numbers vs strings: no implicit conversion
        ("tags.floor = 3", &["d01", "d07"]),
        ("tags.floor = 3.0", &["d01", "d07"]),
        ("tags.floor = '3'", &["d06"]),
        ("tags.floor > 2", &["d01", "d03", "d07"]),
        ("tags.floor < '5'", &["d06"]),
        ("tags.count >= -7", &["d09", "d10"]),
        ("tags.count IN [-7]", &["d10"]),
        // null and missing
        ("tags.nickname = null", &["d03"]),
        ("tags.nickname != null", NONE),
        ("properties.desired.mode = null", &["d05"]),
        ("tags.missing = 'x'", NONE),
        ("tags.missing != 'x'", NONE),
        ("NOT (tags.missing = 'x')", NONE),
        ("tags.missing = 'x' OR tags.group = 'odd'", ODD),
        ("tags.location = 'US'", NONE),
        ("tags.labels = ['a', 'b']", NONE),
        // IN / NIN
        ("tags.group IN ['even', 'x']", EVEN),
        ("tags.group in ['even', 'x']", EVEN),
        ("tags.group NIN ['even']", ODD),
        ("tags.group NOT IN ('even')", ODD),
        ("tags.count IN [7, -7]", &["d09", "d10"]),
        ("tags.floor IN [3]", &["d01", "d07"]),
        ("tags.missing NIN ['x']", NONE),
        ("deviceId IN []", NONE),
        ("deviceId NIN []", ALL),
        // booleans, NOT, precedence and parentheses
        ("tags.flag", &["d09"]),
        ("tags.flag = true", &["d09"]),
        ("tags.flag = false", &["d10"]),
        ("tags.flag > false", &["d09"]),
        ("NOT tags.flag", &["d10"]),
        ("not tags.flag", &["d10"]),
        ("tags.flag AND tags.count = 7", &["d09"]),
        ("NOT (tags.group = 'even')", ODD),
        ("NOT tags.group = 'even'", ODD),
        ("NOT NOT (tags.group = 'even')", EVEN),
        ("tags.group = 'even' AND NOT tags.floor = 3", &["d03"]),
        (
            "tags.group = 'even' AND (tags.floor = 3 OR tags.floor = 10)",
            &["d01", "d03", "d07"],
        ),
        (
            "tags.group = 'even' AND tags.floor = 3 OR deviceId = 'd02'",
            &["d01", "d02", "d07"],
        ),
        (
            "tags.group = 'odd' OR tags.group = 'even' AND tags.floor = 10",
            &["d02", "d03", "d04", "d08", "d10"],
        ),
        (
            "tags.group = 'odd' or tags.group = 'even' and tags.floor = 10",
            &["d02", "d03", "d04", "d08", "d10"],
        ),
        (
            "(tags.group = 'odd' OR tags.group = 'even') AND tags.floor = 10",
            &["d03"],
        ),
        (
            "status = 'enabled' AND (connectionState = 'Disconnected' OR tags.group = 'even')",
            &["d01", "d02", "d04", "d06", "d07", "d09"],
        ),
        ("(((deviceId = 'd05')))", &["d05"]),
        // arithmetic
        ("tags.count * 2 + 1 = 15", &["d09"]),
        ("tags.count % 2 = -1", &["d10"]),
        ("tags.count / 2 = 3.5", &["d09"]),
        ("-tags.count = 7", &["d10"]),
        ("- tags.count - 1 = 6", &["d10"]),
        ("tags.floor - 1 = 2", &["d01", "d07"]),
        ("tags.floor + 1 = 4", &["d01", "d07"]),
        ("properties.reported.temp / 0 = 1", NONE),
        ("(1 + 2) * 3 = 9", ALL),
        ("2 + 3 * 4 = 14", ALL),
        ("10 - 4 - 3 = 3", ALL),
        ("2 * 3 % 4 = 2", ALL),
        ("+tags.count = 7", &["d09"]),
        ("tags.group + 1 = 1", NONE),
        // functions
        ("IS_DEFINED(tags.location)", &["d01", "d02", "d03"]),
        ("is_defined(TAGS.location)", &["d01", "d02", "d03"]),
        (
            "NOT IS_DEFINED(tags.location)",
            &["d04", "d05", "d06", "d07", "d08", "d09", "d10"],
        ),
        (
            "IS_DEFINED(tags)",
            &[
                "d01", "d02", "d03", "d04", "d06", "d07", "d08", "d09", "d10",
            ],
        ),
        (
            "IS_DEFINED(tags.location) = false",
            &["d04", "d05", "d06", "d07", "d08", "d09", "d10"],
        ),
        ("IS_NULL(tags.nickname)", &["d03"]),
        ("IS_NULL(properties.desired.mode)", &["d05"]),
        ("IS_BOOL(tags.flag)", &["d09", "d10"]),
        ("IS_NUMBER(tags.floor)", &["d01", "d02", "d03", "d07"]),
        ("IS_STRING(tags.floor)", &["d06"]),
        ("IS_OBJECT(tags.location)", &["d01", "d02", "d03"]),
        ("IS_OBJECT(tags.meta)", &["d07"]),
        ("IS_ARRAY(tags.labels)", &["d06"]),
        (
            "IS_PRIMITIVE(tags.floor)",
            &["d01", "d02", "d03", "d06", "d07"],
        ),
        ("IS_PRIMITIVE(tags.nickname)", &["d03"]),
        ("STARTS_WITH(tags.prefix, 'Sensor')", &["d10"]),
        ("STARTS_WITH(tags.prefix, 'sensor')", NONE),
        ("STARTS_WITH(tags.prefix, 'sensor', true)", &["d10"]),
        (
            "starts_with(deviceId, 'd0')",
            &[
                "d01", "d02", "d03", "d04", "d05", "d06", "d07", "d08", "d09",
            ],
        ),
        ("ENDS_WITH(deviceId, '0')", &["d10"]),
        ("ENDS_WITH(properties.reported.fw, '.0')", &["d01", "d03"]),
        ("ENDS_WITH(properties.reported.fw, '.0', 'yes')", NONE),
        ("STARTS_WITH(tags.floor, '3')", &["d06"]),
    ];
    let docs = twins();
    let mut failures = Vec::new();
    for (text, expected) in cases {
        match parse_condition(text) {
            Ok(condition) => {
                let got = selected(&condition, &docs);
                if got != *expected {
                    failures.push(format!("{text}: expected {expected:?}, got {got:?}"));
                }
            }
            Err(e) => failures.push(format!("{text}: parse error {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn star_is_every_device() {
    let all = parse_condition("*").unwrap();
    assert!(all.is_all());
    assert!(all.matches(&json!({})));
    assert!(!parse_condition("deviceId = 'x'").unwrap().is_all());
}

#[test]
fn parse_errors_say_what_and_where() {
    let deep_parens = format!("{}true{}", "(".repeat(65), ")".repeat(65));
    let deep_not = format!("{}true", "NOT ".repeat(65));
    let deep_minus = format!("{}1 = 1", "-".repeat(65));
    let deep_arrays = format!("tags.a IN {}{}", "[".repeat(65), "]".repeat(65));
    let too_long = "a".repeat(70_000);
    let cases: Vec<(&str, &str)> = vec![
        ("tags.location = )", "unexpected ')' at position 17, expected a value"),
        ("", "unexpected end of input at position 1, expected a condition"),
        ("   ", "unexpected end of input at position 4, expected a condition"),
        ("tags.a = 'abc", "unterminated string at position 10"),
        ("tags.a = \"abc'", "unterminated string at position 10"),
        ("tags.a = 'a\\qb'", "invalid escape sequence in string at position 12"),
        (
            "tags.a = '\\u12'",
            "invalid \\u escape in string (expected 4 hex digits naming a character) at position 11",
        ),
        (
            "tags.a = '\\uD800'",
            "invalid \\u escape in string (expected 4 hex digits naming a character) at position 11",
        ),
        (
            "FOO(tags.a)",
            "unknown function 'FOO' at position 1, expected one of IS_DEFINED, IS_NULL, IS_BOOL, \
             IS_NUMBER, IS_STRING, IS_OBJECT, IS_ARRAY, IS_PRIMITIVE, STARTS_WITH, ENDS_WITH",
        ),
        ("IS_DEFINED(tags.a, tags.b)", "IS_DEFINED takes 1 argument but was given 2 at position 1"),
        ("IS_DEFINED()", "IS_DEFINED takes 1 argument but was given 0 at position 1"),
        ("STARTS_WITH(deviceId)", "STARTS_WITH takes 2 to 3 arguments but was given 1 at position 1"),
        (
            "SELECT * FROM devices WHERE tags.a = 1",
            "unexpected keyword 'SELECT' at position 1, expected a condition (a queryCondition is \
             only the WHERE part, not a full SELECT query)",
        ),
        (
            "select * from devices",
            "unexpected keyword 'select' at position 1, expected a condition (a queryCondition is \
             only the WHERE part, not a full SELECT query)",
        ),
        ("tags.a = 1 tags.b = 2", "unexpected 'tags' at position 12, expected an operator or end of input"),
        ("(tags.a = 1", "unexpected end of input at position 12, expected an operator or ')'"),
        ("tags.a IN 'x'", "unexpected string 'x' at position 11, expected an array like ['a', 'b']"),
        ("tags.a IN ['x' 'y']", "unexpected string 'y' at position 16, expected ',' or ']'"),
        ("tags. = 1", "unexpected '=' at position 7, expected a property name after '.'"),
        ("tags.a # 1", "unexpected character '#' at position 8"),
        ("tags.a ! 1", "unexpected character '!' at position 8"),
        ("tags.a = 1e999", "number out of range at position 10"),
        ("AND tags.a = 1", "unexpected keyword 'AND' at position 1, expected a value"),
        ("tags.a = 1 AND", "unexpected end of input at position 15, expected a value"),
        ("tags.a = = 1", "unexpected '=' at position 10, expected a value"),
        ("tags.a = *", "unexpected '*' at position 10, expected a value"),
        ("* AND tags.a = 1", "unexpected '*' at position 1, expected a value"),
        ("tags.a = 1 = 2", "unexpected '=' at position 12, expected an operator or end of input"),
        ("tags.é = 'ü' )", "unexpected ')' at position 14, expected an operator or end of input"),
        ("tags[-1] = 1", "unexpected '-' at position 6, expected a quoted property name or an array index inside '[ ]'"),
        ("tags['a' = 1", "unexpected '=' at position 10, expected ']'"),
        ("STARTS_WITH(deviceId 'a')", "unexpected string 'a' at position 22, expected ',' or ')'"),
        (&deep_parens, "expression nested too deeply (more than 64 levels) at position 65"),
        (&deep_not, "expression nested too deeply (more than 64 levels) at position 257"),
        (&deep_minus, "expression nested too deeply (more than 64 levels) at position 65"),
        (&deep_arrays, "expression nested too deeply (more than 64 levels) at position 75"),
        (&too_long, "query too long (70000 bytes, the limit is 65536) at position 65537"),
    ];
    let mut failures = Vec::new();
    for (text, expected) in &cases {
        match parse_condition(text) {
            Ok(c) => failures.push(format!("{text:.60}: parsed as {c:?}")),
            Err(e) if e.to_string() != *expected => failures.push(format!(
                "{text:.60}:\n  expected {expected}\n  got      {e}"
            )),
            Err(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn query_error_is_a_std_error_with_position() {
    let err = parse_condition("tags.location = )").unwrap_err();
    assert_eq!(err.position(), 17);
    assert_eq!(
        err.message(),
        "unexpected ')' at position 17, expected a value"
    );
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(err.clone());
    assert_eq!(boxed.to_string(), err.to_string());
}

#[test]
fn nesting_up_to_the_limit_is_accepted() {
    let parens = format!("{}deviceId = 'd01'{}", "(".repeat(64), ")".repeat(64));
    let c = parse_condition(&parens).unwrap();
    assert_eq!(selected(&c, &twins()), ["d01"]);
    let nots = format!("{}tags.flag", "NOT ".repeat(64));
    assert_eq!(
        selected(&parse_condition(&nots).unwrap(), &twins()),
        ["d09"]
    );
}

#[test]
fn long_flat_chains_do_not_nest() {
    // ~60 KB of OR terms and of additions: flat chains, so no deep recursion anywhere.
    let mut ors: Vec<String> = (0..3000).map(|i| format!("deviceId = 'x{i}'")).collect();
    ors.push("deviceId = 'd07'".to_owned());
    let text = ors.join(" OR ");
    assert!(text.len() < MAX_QUERY_LEN);
    let c = parse_condition(&text).unwrap();
    assert_eq!(selected(&c, &twins()), ["d07"]);

    let sum = format!("{} = 15000", vec!["1"; 15000].join("+"));
    assert!(sum.len() < MAX_QUERY_LEN);
    assert!(parse_condition(&sum).unwrap().matches(&json!({})));

    // The same on a tokio worker's default 2 MiB stack, even in a debug build (the deepest
    // accepted nesting needs under 1 MiB there, far less in release).
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            let c = parse_condition(&text).unwrap();
            let deep = format!("{}true{}", "(".repeat(64), ")".repeat(64));
            (
                c.matches(&json!({"deviceId": "d07"})),
                parse_condition(&deep).is_ok(),
            )
        })
        .unwrap();
    assert_eq!(handle.join().unwrap(), (true, true));
}

#[test]
fn select_queries_parse() {
    let q = parse_select("SELECT * FROM devices").unwrap();
    assert_eq!(q.source, Source::Devices);
    assert!(q.condition.is_none());
    assert!(q.matches(&json!({"deviceId": "any"})));

    let q = parse_select("select * from DEVICES where tags.group = 'even'").unwrap();
    assert_eq!(q.source, Source::Devices);
    let c = q.condition.as_ref().unwrap();
    assert_eq!(selected(c, &twins()), EVEN);
    assert!(q.matches(&twins()[0]));
    assert!(!q.matches(&twins()[1]));

    let q = parse_select("  SELECT   *   FROM   devices.jobs  ").unwrap();
    assert_eq!(q.source, Source::DevicesJobs);
    assert!(q.condition.is_none());

    let q = parse_select("SELECT * FROM devices . jobs WHERE devices.jobs.jobId = 'job1'").unwrap();
    assert_eq!(q.source, Source::DevicesJobs);
}

#[test]
fn select_errors() {
    let cases = [
        ("SELECT deviceId FROM devices", "unexpected 'deviceId' at position 8, expected '*' (only SELECT * is supported)"),
        ("SELECT * FROM devices.configurations", "unexpected 'configurations' at position 23, expected jobs or modules (only devices, devices.jobs and devices.modules can be queried)"),
        ("SELECT * FROM devices WHERE", "unexpected end of input at position 28, expected a condition"),
        ("SELECT * FROM devices GROUP BY tags.a", "unexpected 'GROUP' at position 23, expected WHERE or end of input"),
        ("SELECT * FROM jobs", "unexpected 'jobs' at position 15, expected devices, devices.jobs or devices.modules"),
        ("SELECT * FROM devices WHERE *", "unexpected '*' at position 29, expected a value"),
        ("SELECT * FROM devices WHERE SELECT", "unexpected keyword 'SELECT' at position 29, expected a condition (a queryCondition is only the WHERE part, not a full SELECT query)"),
        ("DELETE FROM devices", "unexpected 'DELETE' at position 1, expected SELECT"),
        ("tags.a = 1", "unexpected 'tags' at position 1, expected SELECT"),
        ("SELECT * devices", "unexpected 'devices' at position 10, expected FROM"),
        ("SELECT * FROM devices WHERE tags.a = 1 ORDER BY tags.a", "unexpected 'ORDER' at position 40, expected an operator or end of input"),
    ];
    for (text, expected) in cases {
        let err = parse_select(text).map(|q| format!("{q:?}")).unwrap_err();
        assert_eq!(err.to_string(), expected, "for {text}");
    }
}

fn job_rows() -> Vec<Value> {
    vec![
        json!({"deviceId": "d01", "jobId": "job1", "jobType": "scheduleDeviceMethod", "status": "completed",
               "startTimeUtc": "2026-11-26T06:00:00Z",
               "outcome": {"deviceMethodResponse": {"status": 200, "payload": {"Result": "ok"}}}}),
        json!({"deviceId": "d02", "jobId": "job1", "jobType": "scheduleDeviceMethod", "status": "failed",
               "error": {"code": "DeviceNotOnline", "description": "device d02 is not online"}}),
        json!({"deviceId": "d01", "jobId": "job2", "jobType": "scheduleUpdateTwin", "status": "completed"}),
    ]
}

#[test]
fn devices_jobs_queries() {
    let cases: &[(&str, &[usize])] = &[
        ("devices.jobs.jobId = 'job1'", &[0, 1]),
        (
            "DEVICES.JOBS.JOBID = 'job1' AND devices.jobs.status = 'failed'",
            &[1],
        ),
        ("Devices.Jobs.jobId = 'job2'", &[2]),
        ("jobId = 'job2'", &[2]),
        (
            "devices.jobs.deviceId = 'd01' AND devices.jobs.jobType = 'scheduleUpdateTwin'",
            &[2],
        ),
        (
            "devices.jobs.outcome.deviceMethodResponse.status = 200",
            &[0],
        ),
        (
            "devices.jobs.outcome.devicemethodresponse.payload.Result = 'ok'",
            &[0],
        ),
        (
            "devices.jobs.outcome.deviceMethodResponse.payload.result = 'ok'",
            &[],
        ),
        ("devices.jobs.error.code = 'DeviceNotOnline'", &[1]),
        ("IS_DEFINED(devices.jobs.error)", &[1]),
        ("devices.jobs.status IN ['completed', 'canceled']", &[0, 2]),
        ("devices.jobs.startTimeUtc > '2026-01-01'", &[0]),
    ];
    let rows = job_rows();
    for (condition, expected) in cases {
        let text = format!("SELECT * FROM devices.jobs WHERE {condition}");
        let q = parse_select(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(q.source, Source::DevicesJobs);
        let got: Vec<usize> = (0..rows.len()).filter(|&i| q.matches(&rows[i])).collect();
        assert_eq!(got, *expected, "for {condition}");
    }
    // A plain condition (twin scope) does not strip the prefix.
    let c = parse_condition("devices.jobs.jobId = 'job1'").unwrap();
    assert!(!rows.iter().any(|r| c.matches(r)));
}

#[test]
fn condition_and_select_agree_on_devices() {
    let docs = twins();
    for condition in [
        "tags.group = 'even'",
        "NOT IS_DEFINED(tags.location)",
        "tags.floor IN [3, '3']",
    ] {
        let c = parse_condition(condition).unwrap();
        let q = parse_select(&format!("SELECT * FROM devices WHERE {condition}")).unwrap();
        let via_select: Vec<String> = docs
            .iter()
            .filter(|d| q.matches(d))
            .map(|d| d["deviceId"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(selected(&c, &docs), via_select, "for {condition}");
    }
}

#[test]
fn pinned_string_only_when_every_match_needs_it() {
    let pinned = |q: &str| {
        parse_select(&format!("SELECT * FROM devices.jobs WHERE {q}"))
            .unwrap()
            .condition
            .unwrap()
            .pinned_string("jobId")
            .map(str::to_string)
    };
    assert_eq!(pinned("devices.jobs.jobId = 'a'").as_deref(), Some("a"));
    assert_eq!(pinned("status = 'x' AND 'b' = JOBID").as_deref(), Some("b"));
    for q in [
        "jobId = 'a' OR status = 'x'",
        "NOT jobId = 'a'",
        "jobId != 'a'",
        "jobId = 1",
        "jobId.x = 'a'",
        "deviceId = 'a'",
    ] {
        assert_eq!(pinned(q), None, "{q}");
    }
}

#[test]
fn devices_modules_queries_and_module_job_conditions() {
    let twin = json!({"deviceId": "edge1", "moduleId": "filter", "tags": {"site": "a"},
                      "properties": {"reported": {"status": "scanning"}}});
    let q = |text: &str| parse_select(text).unwrap();
    let all = q("SELECT * FROM devices.modules");
    assert_eq!(all.source, Source::DevicesModules);
    assert!(all.matches(&twin));
    // The spellings of the service's documentation and of IoT Edge tooling.
    for text in [
        "SELECT * FROM devices.modules WHERE properties.reported.status = 'scanning'",
        "SELECT * FROM devices.modules WHERE devices.modules.moduleId = 'filter' AND deviceId IN ['edge1']",
        "select * from devices.modules where devices.deviceId = 'edge1'",
    ] {
        assert!(q(text).matches(&twin), "{text}");
    }
    assert!(!q("SELECT * FROM devices.modules WHERE moduleId = 'other'").matches(&twin));

    // Job conditions: `FROM devices.modules WHERE …` selects modules (Azure/iotedge#719).
    let c = parse_condition("FROM devices.modules WHERE ModuleId = 'filter'").unwrap();
    assert!(c.over_modules() && c.matches(&twin));
    assert!(
        !parse_condition("FROM devices.modules WHERE moduleId = 'x'")
            .unwrap()
            .matches(&twin)
    );
    let every = parse_condition("from devices.modules").unwrap();
    assert!(every.over_modules() && every.is_all());
    assert!(!parse_condition("deviceId = 'edge1'")
        .unwrap()
        .over_modules());
    for (text, expected) in [
        ("FROM devices WHERE x = 1", "unexpected keyword 'WHERE' at position 14, expected '.modules' (a job condition may start FROM devices.modules)"),
        ("FROM devices.jobs", "unexpected 'jobs' at position 14, expected modules (a job condition may start FROM devices.modules)"),
        ("FROM devices.modules tags.a = 1", "unexpected 'tags' at position 22, expected WHERE or end of input"),
    ] {
        assert_eq!(parse_condition(text).unwrap_err().to_string(), expected, "{text}");
    }
}

#[test]
fn a_dollar_name_may_hold_a_dash_before_a_letter_and_a_route_condition_reads_a_message() {
    let message = json!({
        "level": "critical",
        "$iothub-enqueuedtime": "2026-01-01T00:00:00Z",
        "$body": {"Temp": 31},
        "$twin": {"tags": {"site": "north"}, "properties": {"reported": {"$version": 3}}}
    });
    let yes = |text: &str| parse_route_condition(text).unwrap().matches(&message);
    assert!(yes("$iothub-enqueuedtime = '2026-01-01T00:00:00Z'"));
    // A dash before a digit is a minus: `$version-1` subtracts.
    assert!(yes("$twin.properties.reported.$version-1 = 2"));
    // Property names match case-insensitively; below `$body` and `$twin.tags` names are exact.
    assert!(yes(
        "LEVEL = 'critical' AND $BODY.Temp > 30 AND $twin.tags.site = 'north'"
    ));
    assert!(!yes("$body.temp > 30"));
    assert!(!yes("$twin.tags.Site = 'north'"));
    assert!(yes("") && yes("true"));
    assert!(parse_route_condition("level = ").is_err());
}
