#!/usr/bin/env python3
"""Writes the seed corpora in tests/fuzz/corpus/ (run from anywhere; the output is committed).

The connector targets read their input with libFuzzer's FuzzedDataProvider: strings (header values, bodies) from the
front, each ended by a backslash and one other character, and numbers (action, identity mask, per answer: status,
content type, header mask) from the back, last byte first. answer() and connector_seed() lay out bytes that way so
that the seeds start the fuzzer from plausible peer conversations.
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
STATUSES = [200, 200, 200, 200, 201, 202, 204, 207, 301, 400, 401, 403, 404, 409, 410, 412, 415, 429, 500, 502,
            503, 0, 200, 200]


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def fdp_string(s):
    b = s.encode() if isinstance(s, str) else s
    return b.replace(b"\\", b"\\\\") + b"\\ "


def connector_seed(action, identity_mask, answers):
    """answers: [(status, json_content_type, {header_index: value}, body)]"""
    front, back = b"", []
    back.append(action)
    back += [identity_mask & 0xFF, identity_mask >> 8][::-1]
    for status, ctype, headers, body in answers:
        back.append(STATUSES.index(status))
        if status == 0:
            continue
        back.append(1 if ctype else 0)
        mask = sum(1 << i for i in headers)
        back += [mask & 0xFF, mask >> 8][::-1]
        for i in sorted(headers):
            front += fdp_string(headers[i])
        front += fdp_string(body if isinstance(body, str) else json.dumps(body))
    return front + bytes(reversed(back))


# --- request bodies -----------------------------------------------------------------------------------------------
ids = '"subject":{"identities":[{"kind":"email","value":"jane@example.com"},{"kind":"phone","value":"+1 (415) 555-0100"}]}'
for name, sel, body in [
    ("create-delete", 0, '{"type":"delete","channel":"web_form","received_at":"2026-01-05T09:00:00-08:00",' + ids + '}'),
    ("create-correct", 1, '{"type":"correct","channel":"mail","subject":{"identities":[{"kind":"name","value":"Jane Doe"},'
                          '{"kind":"mrn","value":"A-10045"}]},"authorized_agent":{"name":"Agent Smith","kind":"person",'
                          '"proof":"signed_permission"},"corrections":[{"field":"postal_address","value":"1 Main St"}]}'),
    ("create-callback", 0, '{"type":"opt_out","channel":"gpc","callback_url":"https://portal.example.com/hooks",'
                           '"subject":{"identities":[{"kind":"device_id","value":"abc-123"}]}}'),
    ("create-duplicate-key", 0, '{"type":"delete","type":"access",' + ids + '}'),
    ("create-bad-utf8", 0, b'{"type":"delete","subject":{"identities":[{"kind":"name","value":"\xc0\xaf\xed\xa0\x80"}]}}'),
    ("create-deep", 0, '{"type":"delete",' + ids + ',"x":' + "[" * 20 + "]" * 20 + '}'),
    ("verify", 2, '{"method":"account_login","level":"reasonable"}'),
    ("extend", 3, '{"reason":"records are held in three archives"}'),
    ("deny", 4, '{"reason":"other","detail":"not a California resident"}'),
    ("cancel", 5, '{"reason":"withdrawn"}'),
    ("acknowledge", 6, '{}'),
    ("task-complete", 7, '{"outcome":"retained_exempt","note":"HIPAA basis"}'),
    ("rfc3339", 8, '2026-11-20T09:00:00.123456789+14:00'),
]:
    write("request_parse", name, bytes([sel]) + (body if isinstance(body, bytes) else body.encode()))

# --- config -------------------------------------------------------------------------------------------------------
write("config", "full.toml", """[http]
listen = "127.0.0.1:8080"
threads = 16
max_body_bytes = 1048576
[database]
url = "postgresql:///rightsd"
pool_size = 4
[calendar]
timezone = "America/Los_Angeles"
holidays_file = "holidays.txt"
business_days = ["mon", "tue", "wed", "thu", "fri"]
at_risk_days = 10
[auth]
tokens_file = "tokens"
[crypto]
key_file = "pii.key"
[callbacks]
secret_file = "callback.key"
max_attempts = 5
[engine]
enabled = true
lease_ms = 60000
[[systems]]
name = "crm"
connector = "salesforce"
categories = ["contact", "marketing"]
on_delete = "deidentify"
[systems.settings]
login_url = "https://login.salesforce.com"
client_id = "abc"
[[systems]]
name = "ehr"
connector = "manual"
categories = ["clinical"]
on_delete = "retain"
retain_basis = "HIPAA"
request_types = ["access", "delete"]
""")
write("config", "bad-type.toml", '[http]\nthreads = "many"\n[database]\nurl = "x"\n')
write("config", "unknown-key.toml", '[http]\nlisten = "127.0.0.1:1"\nturbo = true\n')
write("config", "broken.toml", '[http\nlisten = "127.0.0.1:1\n')

# --- holidays -----------------------------------------------------------------------------------------------------
write("holidays", "us-2026", "mon,tue,wed,thu,fri\n# US federal\n2026-01-01\n2026-07-03 # observed\n\n  2026-12-25  \n")
write("holidays", "weekend-worker", "sat,sun\n2026-02-28\n")
write("holidays", "bad-date", "mon\n2025-02-30\n")
write("holidays", "junk", "\n2026-01-01x\n")

# --- OpenDSR callbacks --------------------------------------------------------------------------------------------
body = json.dumps({"controller_id": "c1", "expected_completion_time": "2026-01-01T00:00:00Z",
                   "subject_request_id": "0e7c1d2a-3b4c-4d5e-8f6a-7b8c9d0e1f2a", "request_status": "completed",
                   "api_version": "2.0", "status_callback_url": "https://rightsd.example.com/v1/callbacks/opendsr"})
for name, sign, slot, sig, b in [
    ("signed", 1, 0, "", body),
    ("signed-gdpr-header", 1, 1, "", body),
    ("signed-other-endpoint", 1, 0, "", body.replace("rightsd.example.com", "evil.example.com")),
    ("forged", 0, 0, "c2lnbmF0dXJl", body),
    ("unsigned-not-json", 0, 3, "", "request_status=completed"),
]:
    write("opendsr_callback", name,
          fdp_string(sig) + fdp_string("processor.example.com") + b.encode() + bytes([slot, sign]))

# --- connectors ---------------------------------------------------------------------------------------------------
ACCESS, DELETE, DEIDENTIFY, LOCATE, CORRECT, OPT_OUT, LIMIT = range(7)
token = {"access_token": "tok", "instance_url": "https://org.example.com", "token_type": "Bearer", "expires_in": 3600,
         "rest_instance_url": "https://rest.example.com/", "scope": "system/*.rs"}
err = {"error": "invalid_grant", "error_description": "expired"}
seeds = {
    "webhook": [
        (DELETE, 0x1, [(200, True, {}, {"api_version": "2.0", "supported_subject_request_types": ["erasure", "access"],
                                        "supported_identities": [{"identity_type": "email", "identity_format": "raw"}]}),
                       (201, True, {}, {"controller_id": "c", "expected_completion_time": "2026-01-01T00:00:00Z",
                                        "received_time": "2026-01-01T00:00:00Z", "subject_request_id": "x"}),
                       (200, True, {}, {"request_status": "completed", "results_url": "https://p.example.com/r"})]),
        (ACCESS, 0x201, [(200, True, {}, {"api_version": "2.0"}), (201, True, {}, {}),
                         (200, True, {}, {"request_status": "in_progress"})]),
        (DELETE, 0x1, [(429, False, {0: "5"}, ""), (503, False, {}, "busy")]),
    ],
    "salesforce": [
        (DELETE, 0x11, [(200, True, {}, token),
                        (200, True, {0: "api-usage=10/15000"}, {"totalSize": 1, "done": True,
                                                                 "records": [{"attributes": {"type": "Contact"}, "Id": "003000000000001AAA"}]}),
                        (200, True, {}, [{"id": "003000000000001AAA", "success": True, "errors": []}])]),
        (ACCESS, 0x9, [(200, True, {}, token), (200, True, {}, {"totalSize": 0, "done": True, "records": []})]),
        (OPT_OUT, 0x1, [(400, True, {}, err)]),
    ],
    "fhir": [
        (ACCESS, 0x103, [(200, True, {}, {"token_endpoint": "https://ehr.example.com/token",
                                          "token_endpoint_auth_methods_supported": ["private_key_jwt"]}),
                         (200, True, {}, token),
                         (200, True, {}, {"resourceType": "Bundle", "type": "searchset", "entry": [
                             {"resource": {"resourceType": "Patient", "id": "p1"}, "search": {"mode": "match"}}]}),
                         (200, True, {}, {"resourceType": "Bundle", "entry": [], "link": [
                             {"relation": "next", "url": "https://ehr.example.com/fhir/R4/Patient?page=2"}]})]),
        (DELETE, 0x2, [(200, True, {}, {"token_endpoint": "https://ehr.example.com/token"}), (200, True, {}, token),
                       (200, True, {}, {"resourceType": "OperationOutcome", "issue": [{"severity": "error"}]})]),
        (CORRECT, 0x4, [(200, True, {}, {}), (401, True, {}, err)]),
    ],
    "hubspot": [
        (DELETE, 0x21, [(200, True, {1: "99", 2: "100"}, {"total": 1, "results": [{"id": "5151", "properties": {"email": "x"}}]}),
                        (204, False, {}, "")]),
        (ACCESS, 0x1, [(200, True, {}, {"total": 0, "results": []})]),
        (OPT_OUT, 0x1, [(429, True, {0: "1"}, {"status": "error", "policyName": "TEN_SECONDLY_ROLLING"})]),
    ],
    "mailchimp": [
        (ACCESS, 0x1, [(200, True, {1: "req-1"}, {"id": "abc", "email_address": "x", "status": "subscribed",
                                                 "merge_fields": {"FNAME": "J"}}),
                       (404, True, {}, {"type": "x", "title": "Resource Not Found", "status": 404, "detail": "d"})]),
        (DELETE, 0x1, [(204, False, {}, ""), (204, False, {}, "")]),
        (OPT_OUT, 0x41, [(400, True, {}, {"title": "Forgotten Email Not Subscribed", "status": 400})]),
    ],
    "sfmc": [
        (DELETE, 0x81, [(200, True, {}, token), (200, True, {}, {"operationID": 42, "operationInitiated": True,
                                                                "requestServiceMessageID": "m"}),
                        (200, True, {}, {"operation": {"id": 42, "status": "Completed"},
                                         "backgroundOperationsSummary": {"status": "Completed"}})]),
        (ACCESS, 0x1, [(200, True, {}, token), (200, True, {}, {"channelAddressResponseEntities": [
            {"contactKeyDetails": [{"contactKey": "ck-fuzz-1"}]}], "hasErrors": False})]),
        (OPT_OUT, 0x1, [(401, True, {}, err)]),
    ],
}
for target, items in seeds.items():
    for i, (action, mask, answers) in enumerate(items):
        write(target, f"seed-{i}", connector_seed(action, mask, answers))

# --- peer error text longer than the message limit, in multi-byte characters (cut mid-character = invalid UTF-8) --
long_text = "é" * 700
for target, body in [
    ("hubspot", {"status": "error", "message": long_text, "category": "VALIDATION_ERROR"}),
    ("mailchimp", {"type": "x", "title": long_text, "status": 400, "detail": long_text}),
    ("fhir", {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid",
                                                             "diagnostics": long_text}]}),
    ("salesforce", [{"errorCode": "INVALID_FIELD", "message": long_text}]),
    ("sfmc", {"message": long_text, "errorcode": 10001, "documentation": long_text}),
    ("webhook", {"error": {"code": 400, "message": long_text}}),
]:
    write(target, "seed-long-multibyte-error", connector_seed(DELETE, 0x1, [(400, True, {}, body)]))
