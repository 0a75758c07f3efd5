// The SPA's main flows, walked against a running server with the client generated from the
// schema. Every value below gets its type from the schema alone: if a flow needs a cast to
// compile, the schema is wrong, and this program is where that shows first.
//
//   API_URL=http://127.0.0.1:8000 STAFF_TOKEN=<a staff user's token> node build/flows.js
//
// It asks on stdin for the link of the verification email it signed up for (the console email
// backend prints it). Any surprise throws: the exit code is then non-zero.
import { createInterface } from "node:readline";
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

function requiredEnv(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === "") {
    throw new Error(`${name} is not set: the flows need the server's URL and a staff token`);
  }
  return value;
}

// The server's answer goes in the message: an unexpected status is only useful with its body.
function unexpected(step: string, response: Response, body: unknown): Error {
  return new Error(
    `${step}: unexpected HTTP ${response.status} from ${response.url}: ${JSON.stringify(body)}`,
  );
}

function check(condition: boolean, step: string, detail: string): void {
  if (!condition) {
    throw new Error(`${step}: ${detail}`);
  }
}

function log(step: string, detail: string): void {
  console.log(`ok  ${step.padEnd(28)} ${detail}`);
}

// The verification link travels by email, which this program cannot read: whoever runs it
// (a person with the server's console, or a test with its outbox) answers on stdin.
async function askForLine(question: string): Promise<string> {
  console.log(question);
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    lines.close();
    return line.trim();
  }
  throw new Error(`stdin closed before an answer to: ${question}`);
}

function isoDate(daysFromToday: number): string {
  const day = new Date(Date.now() + daysFromToday * 86_400_000);
  return day.toISOString().slice(0, 10);
}

const baseUrl = requiredEnv("API_URL");
const staffToken = requiredEnv("STAFF_TOKEN");

// Unique per run, so that the walk can be repeated against the same database.
const runId = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
const email = `spa-${runId}@example.com`;
const password = `Quiet-harbour-${runId}-7`;

const anonymous = createClient<paths>({ baseUrl });

// --- Accounts -----------------------------------------------------------------------------

const signup = await anonymous.POST("/api/auth/signup/", {
  body: { email, password, name: "Ada Client" },
});
if (signup.response.status !== 201 || signup.data === undefined) {
  throw unexpected("signup", signup.response, signup.error);
}
check(signup.data.email === email, "signup", `email is ${signup.data.email}`);
check(signup.data.email_verified === false, "signup", "a new account is already verified");
log("signup", `user ${signup.data.id}`);

const login = await anonymous.POST("/api/auth/login/", { body: { email, password } });
if (login.response.status !== 200 || login.data === undefined) {
  throw unexpected("login", login.response, login.error);
}
const userId = login.data.user.id;
check(userId === signup.data.id, "login", `user ${userId} is not the one signed up`);
check(login.data.user.is_staff === false, "login", "a new account is staff");
check(login.data.token.length > 0, "login", "empty token");
log("login", `token for user ${userId}`);

// Sending an invoice by email needs a verified address: the SPA's /verify-email page posts the
// uid and token of the emailed link.
const answer = await askForLine(`verify-email ${email}: paste the link of the verification email`);
const verifyLink = new URL(answer);
const uid = verifyLink.searchParams.get("uid");
const verifyToken = verifyLink.searchParams.get("token");
if (uid === null || verifyToken === null) {
  throw new Error(`verify email: ${answer} has no uid and token`);
}
const verified = await anonymous.POST("/api/auth/verify-email/", {
  body: { uid, token: verifyToken },
});
if (verified.response.status !== 204) {
  throw unexpected("verify email", verified.response, verified.error);
}
log("verify email", `uid ${uid}`);

// DRF's token authentication: the scheme is "Token", not "Bearer". Array query parameters
// (`ordering`) are comma-separated (the schema's explode: false, which the client does not read
// from the schema).
const api = createClient<paths>({
  baseUrl,
  headers: { Authorization: `Token ${login.data.token}` },
  querySerializer: { array: { style: "form", explode: false } },
});
const staff = createClient<paths>({ baseUrl, headers: { Authorization: `Token ${staffToken}` } });

const me = await api.GET("/api/auth/me/");
if (me.response.status !== 200 || me.data === undefined) {
  throw unexpected("GET me", me.response, me.error);
}
check(me.data.email === email, "GET me", `email is ${me.data.email}`);
check(me.data.email_verified, "GET me", "the address is still not verified");
log("GET me", me.data.email);

const renamed = await api.PATCH("/api/auth/me/", { body: { name: "Ada Lovelace" } });
if (renamed.response.status !== 200 || renamed.data === undefined) {
  throw unexpected("PATCH me", renamed.response, renamed.error);
}
check(renamed.data.name === "Ada Lovelace", "PATCH me", `name is ${renamed.data.name}`);
log("PATCH me", `name ${renamed.data.name}`);

// --- Invoices, up to their payment ---------------------------------------------------------

const created = await api.POST("/api/invoices/", {
  body: {
    client_name: "Analytical Engines Ltd",
    client_email: `billing-${runId}@example.com`,
    due_date: isoDate(30),
    items: [
      { description: "Design review", quantity: "2", unit_price: "150.00" },
      { description: "Punched cards", quantity: "10", unit_price: "1.25" },
    ],
  },
});
if (created.response.status !== 201 || created.data === undefined) {
  throw unexpected("create invoice", created.response, created.error);
}
const invoiceId = created.data.id;
const invoicePath = { id: invoiceId };
check(created.data.status === "draft", "create invoice", `status ${created.data.status}`);
check(created.data.total === "312.50", "create invoice", `total ${created.data.total}`);
log("create invoice", `${created.data.number} total ${created.data.total}`);

const drafts = await api.GET("/api/invoices/", {
  params: { query: { status: "draft", ordering: ["-created_at", "number"], page_size: 10 } },
});
if (drafts.response.status !== 200 || drafts.data === undefined) {
  throw unexpected("list drafts", drafts.response, drafts.error);
}
check(
  drafts.data.results.some((invoice) => invoice.id === invoiceId),
  "list drafts",
  `invoice ${invoiceId} is not among ${drafts.data.count} drafts`,
);
check(
  drafts.data.results.every((invoice) => invoice.status === "draft"),
  "list drafts",
  "the status filter let another status through",
);
log("list drafts", `${drafts.data.count} draft(s)`);

const patched = await api.PATCH("/api/invoices/{id}/", {
  params: { path: invoicePath },
  body: {
    client_name: "Analytical Engines plc",
    items: [{ description: "Design review", quantity: "3", unit_price: "150.00" }],
  },
});
if (patched.response.status !== 200 || patched.data === undefined) {
  throw unexpected("PATCH draft", patched.response, patched.error);
}
check(patched.data.client_name === "Analytical Engines plc", "PATCH draft", "name unchanged");
check(patched.data.total === "450.00", "PATCH draft", `total ${patched.data.total}`);
check(patched.data.items.length === 1, "PATCH draft", `${patched.data.items.length} items`);
log("PATCH draft", `total ${patched.data.total}`);

const finalized = await api.POST("/api/invoices/{id}/finalize/", {
  params: { path: invoicePath },
});
if (finalized.response.status !== 200 || finalized.data === undefined) {
  throw unexpected("finalize", finalized.response, finalized.error);
}
check(finalized.data.status === "finalized", "finalize", `status ${finalized.data.status}`);
check(/^INV-\d{4}-\d{3,}$/.test(finalized.data.number), "finalize", finalized.data.number);
check(finalized.data.finalized_at !== null, "finalize", "finalized_at is null");
log("finalize", `${finalized.data.number}`);

// --- Errors a SPA shows: a conflict and field errors ---------------------------------------

const conflict = await api.PATCH("/api/invoices/{id}/", {
  params: { path: invoicePath },
  body: { client_name: "Too late" },
});
if (conflict.response.status !== 409 || conflict.error === undefined) {
  throw unexpected("PATCH finalized", conflict.response, conflict.data);
}
if (!("detail" in conflict.error) || typeof conflict.error.detail !== "string") {
  throw unexpected("PATCH finalized", conflict.response, conflict.error);
}
log("PATCH finalized: 409", conflict.error.detail);

const invalid = await api.POST("/api/invoices/", {
  body: {
    client_name: "Nobody",
    client_email: "not-an-email",
    due_date: isoDate(30),
    items: [{ description: "Nothing", quantity: "1", unit_price: "1.00" }],
  },
});
if (invalid.response.status !== 400 || invalid.error === undefined) {
  throw unexpected("invalid invoice", invalid.response, invalid.data);
}
if (!("client_email" in invalid.error) || !Array.isArray(invalid.error.client_email)) {
  throw unexpected("invalid invoice", invalid.response, invalid.error);
}
log("invalid invoice: 400", `client_email: ${invalid.error.client_email.join(" ")}`);

// --- Sending, paying, the PDF --------------------------------------------------------------

const sent = await api.POST("/api/invoices/{id}/send/", { params: { path: invoicePath } });
if (sent.response.status !== 202 || sent.data === undefined) {
  throw unexpected("send", sent.response, sent.error);
}
check(sent.data.status === "sent", "send", `status ${sent.data.status}`);
log("send", `status ${sent.data.status}`);

const method: components["schemas"]["MethodEnum"] = "bank_transfer";
const payment = await api.POST("/api/invoices/{id}/payments/", {
  params: { path: invoicePath },
  body: { amount: sent.data.balance_due, method },
});
if (payment.response.status !== 201 || payment.data === undefined) {
  throw unexpected("payment", payment.response, payment.error);
}
check(payment.data.amount === sent.data.balance_due, "payment", `amount ${payment.data.amount}`);
check(payment.data.method === method, "payment", `method ${payment.data.method}`);
log("payment", `${payment.data.amount} by ${payment.data.method}`);

const paid = await api.GET("/api/invoices/{id}/", { params: { path: invoicePath } });
if (paid.response.status !== 200 || paid.data === undefined) {
  throw unexpected("GET paid invoice", paid.response, paid.error);
}
check(paid.data.status === "paid", "GET paid invoice", `status ${paid.data.status}`);
check(paid.data.balance_due === "0.00", "GET paid invoice", `balance ${paid.data.balance_due}`);
check(paid.data.paid_at !== null, "GET paid invoice", "paid_at is null");
log("GET paid invoice", `status ${paid.data.status}, paid ${paid.data.amount_paid}`);

const pdf = await api.GET("/api/invoices/{id}/pdf/", {
  params: { path: invoicePath },
  parseAs: "arrayBuffer",
});
if (pdf.response.status !== 200 || pdf.data === undefined) {
  throw unexpected("PDF", pdf.response, pdf.error);
}
const magic = new TextDecoder().decode(new Uint8Array(pdf.data, 0, 4));
check(magic === "%PDF", "PDF", `starts with ${JSON.stringify(magic)}`);
check(
  pdf.response.headers.get("content-type") === "application/pdf",
  "PDF",
  `content type ${pdf.response.headers.get("content-type")}`,
);
log("PDF", `${pdf.data.byteLength} bytes`);

// --- Download links ------------------------------------------------------------------------

const link = await api.POST("/api/invoices/{id}/download-links/", {
  params: { path: invoicePath },
  body: { expires_in_hours: 2, max_downloads: 3 },
});
if (link.response.status !== 201 || link.data === undefined) {
  throw unexpected("create link", link.response, link.error);
}
check(new URL(link.data.url).pathname.startsWith("/downloads/"), "create link", link.data.url);
check(link.data.max_downloads === 3, "create link", `max_downloads ${link.data.max_downloads}`);
const linkId = link.data.id;
log("create link", `link ${linkId} until ${link.data.expires_at}`);

const links = await api.GET("/api/invoices/{id}/download-links/", {
  params: { path: invoicePath },
});
if (links.response.status !== 200 || links.data === undefined) {
  throw unexpected("list links", links.response, links.error);
}
const listed = links.data.find((each) => each.id === linkId);
if (listed === undefined) {
  throw new Error(`list links: link ${linkId} is missing from ${JSON.stringify(links.data)}`);
}
check(listed.revoked_at === null, "list links", "a new link is revoked");
log("list links", `${links.data.length} link(s)`);

const revoked = await api.DELETE("/api/invoices/{id}/download-links/{link_id}/", {
  params: { path: { id: invoiceId, link_id: linkId } },
});
if (revoked.response.status !== 204) {
  throw unexpected("revoke link", revoked.response, revoked.error);
}
const afterRevoke = await api.GET("/api/invoices/{id}/download-links/", {
  params: { path: invoicePath },
});
if (afterRevoke.response.status !== 200 || afterRevoke.data === undefined) {
  throw unexpected("list links", afterRevoke.response, afterRevoke.error);
}
check(
  afterRevoke.data.some((each) => each.id === linkId && each.revoked_at !== null),
  "revoke link",
  `link ${linkId} is not revoked: ${JSON.stringify(afterRevoke.data)}`,
);
log("revoke link", `link ${linkId}`);

// --- Notifications -------------------------------------------------------------------------

const notifications = await api.GET("/api/notifications/", {
  params: { query: { is_read: false, page_size: 50 } },
});
if (notifications.response.status !== 200 || notifications.data === undefined) {
  throw unexpected("notifications", notifications.response, notifications.error);
}
const first = notifications.data.results[0];
if (first === undefined) {
  throw new Error("notifications: finalizing, sending and paying an invoice notified nothing");
}
check(
  notifications.data.results.some((each) => each.type === "invoice_paid"),
  "notifications",
  `no invoice_paid among ${notifications.data.results.map((each) => each.type).join(", ")}`,
);
log("notifications", `${notifications.data.count} unread, newest ${first.type}`);

const unreadBefore = await api.GET("/api/notifications/unread-count/");
if (unreadBefore.response.status !== 200 || unreadBefore.data === undefined) {
  throw unexpected("unread count", unreadBefore.response, unreadBefore.error);
}
check(
  unreadBefore.data.unread_count === notifications.data.count,
  "unread count",
  `${unreadBefore.data.unread_count}, the list says ${notifications.data.count}`,
);
log("unread count", `${unreadBefore.data.unread_count}`);

const read = await api.PUT("/api/notifications/{id}/read/", {
  params: { path: { id: first.id } },
});
if (read.response.status !== 200 || read.data === undefined) {
  throw unexpected("mark read", read.response, read.error);
}
check(read.data.is_read && read.data.read_at !== null, "mark read", "still unread");
log("mark read", `notification ${read.data.id}`);

const allRead = await api.PUT("/api/notifications/mark-all-read/");
if (allRead.response.status !== 200 || allRead.data === undefined) {
  throw unexpected("mark all read", allRead.response, allRead.error);
}
check(
  allRead.data.marked === unreadBefore.data.unread_count - 1,
  "mark all read",
  `marked ${allRead.data.marked} of ${unreadBefore.data.unread_count - 1}`,
);
const unreadAfter = await api.GET("/api/notifications/unread-count/");
if (unreadAfter.response.status !== 200 || unreadAfter.data === undefined) {
  throw unexpected("unread count", unreadAfter.response, unreadAfter.error);
}
check(unreadAfter.data.unread_count === 0, "mark all read", `${unreadAfter.data.unread_count}`);
log("mark all read", `${allRead.data.marked} marked`);

// --- Subscription --------------------------------------------------------------------------

const none = await api.GET("/api/subscription/");
if (none.response.status !== 404) {
  throw unexpected("no subscription yet", none.response, none.data ?? none.error);
}
const subscribed = await api.POST("/api/subscription/", { body: { plan: "pro" } });
if (subscribed.response.status !== 201 || subscribed.data === undefined) {
  throw unexpected("subscribe", subscribed.response, subscribed.error);
}
check(subscribed.data.plan === "pro", "subscribe", `plan ${subscribed.data.plan}`);
check(subscribed.data.status === "active", "subscribe", `status ${subscribed.data.status}`);
log("subscribe", `${subscribed.data.plan} until ${subscribed.data.current_period_end}`);

const subscription = await api.GET("/api/subscription/");
if (subscription.response.status !== 200 || subscription.data === undefined) {
  throw unexpected("GET subscription", subscription.response, subscription.error);
}
check(subscription.data.plan === "pro", "GET subscription", `plan ${subscription.data.plan}`);
log("GET subscription", subscription.data.status);

const renewed = await api.POST("/api/subscription/renew/");
if (renewed.response.status !== 200 || renewed.data === undefined) {
  throw unexpected("renew", renewed.response, renewed.error);
}
check(
  Date.parse(renewed.data.current_period_end) > Date.parse(subscribed.data.current_period_end),
  "renew",
  `period end ${renewed.data.current_period_end} did not move`,
);
log("renew", `until ${renewed.data.current_period_end}`);

const cancelled = await api.POST("/api/subscription/cancel/");
if (cancelled.response.status !== 200 || cancelled.data === undefined) {
  throw unexpected("cancel", cancelled.response, cancelled.error);
}
check(cancelled.data.status === "cancelled", "cancel", `status ${cancelled.data.status}`);
check(cancelled.data.cancelled_at !== null, "cancel", "cancelled_at is null");
log("cancel", `at ${cancelled.data.cancelled_at}`);

// --- Staff: the audit trail ----------------------------------------------------------------

const forbidden = await api.GET("/api/audit/logs/");
if (forbidden.response.status !== 403 || forbidden.error === undefined) {
  throw unexpected("audit as a user", forbidden.response, forbidden.data);
}
log("audit as a user: 403", "detail" in forbidden.error ? `${forbidden.error.detail}` : "");

const staffMe = await staff.GET("/api/auth/me/");
if (staffMe.response.status !== 200 || staffMe.data === undefined) {
  throw unexpected("staff me", staffMe.response, staffMe.error);
}
check(staffMe.data.is_staff, "staff me", `STAFF_TOKEN's user ${staffMe.data.id} is not staff`);

// A cursor page's `next` is a full URL: its `cursor` is what the next call passes.
const seen = new Set<components["schemas"]["AuditLog"]["id"]>();
let cursor: string | undefined;
let pages = 0;
let previousId = Number.POSITIVE_INFINITY;
do {
  const page = await staff.GET("/api/audit/logs/", {
    params: { query: { page_size: 2, cursor } },
  });
  if (page.response.status !== 200 || page.data === undefined) {
    throw unexpected(`audit page ${pages + 1}`, page.response, page.error);
  }
  pages += 1;
  check(page.data.results.length <= 2, "audit pages", `${page.data.results.length} entries`);
  for (const entry of page.data.results) {
    check(!seen.has(entry.id), "audit pages", `entry ${entry.id} came twice`);
    check(entry.id < previousId, "audit pages", `entry ${entry.id} is not older`);
    seen.add(entry.id);
    previousId = entry.id;
  }
  const next = page.data.next;
  cursor = next ? (new URL(next).searchParams.get("cursor") ?? undefined) : undefined;
  check(next === null || next === undefined || cursor !== undefined, "audit pages", `${next}`);
} while (cursor !== undefined && pages < 3);
check(pages === 3, "audit pages", `only ${pages} page(s) of 2 entries`);
log("audit pages", `${pages} pages, entries ${[...seen].join(", ")}`);

const invoiceEntries = await staff.GET("/api/audit/logs/", {
  params: { query: { action: "invoice.", user: userId, page_size: 50 } },
});
if (invoiceEntries.response.status !== 200 || invoiceEntries.data === undefined) {
  throw unexpected("audit filter", invoiceEntries.response, invoiceEntries.error);
}
const actions = invoiceEntries.data.results.map((entry) => entry.action);
check(
  invoiceEntries.data.results.every(
    (entry) => entry.action.startsWith("invoice.") && entry.user === userId,
  ),
  "audit filter",
  `entries outside the filter: ${actions.join(", ")}`,
);
for (const action of ["invoice.created", "invoice.finalized", "invoice.sent", "invoice.paid"]) {
  check(actions.includes(action), "audit filter", `no ${action} among ${actions.join(", ")}`);
}
log("audit filter", actions.join(", "));

const jsonl = await staff.GET("/api/audit/logs/export/", {
  params: { query: { format: "jsonl", user: userId } },
  parseAs: "text",
});
if (jsonl.response.status !== 200 || jsonl.data === undefined) {
  throw unexpected("export jsonl", jsonl.response, jsonl.error);
}
const lines = jsonl.data.split("\n").filter((line) => line !== "");
check(lines.length > 0, "export jsonl", "no lines");
for (const line of lines) {
  const entry: unknown = JSON.parse(line);
  check(
    typeof entry === "object" && entry !== null && !Array.isArray(entry) && "action" in entry,
    "export jsonl",
    `a line is not an entry: ${line}`,
  );
}
log("export jsonl", `${lines.length} entries`);

const csv = await staff.GET("/api/audit/logs/export/", {
  params: { query: { format: "csv", user: userId } },
  parseAs: "text",
});
if (csv.response.status !== 200 || csv.data === undefined) {
  throw unexpected("export csv", csv.response, csv.error);
}
const [header, ...rows] = csv.data.trim().split(/\r?\n/);
check(header !== undefined && header.split(",").includes("action"), "export csv", `${header}`);
check(rows.length >= lines.length, "export csv", `${rows.length} rows, ${lines.length} in jsonl`);
check(
  (csv.response.headers.get("content-type") ?? "").startsWith("text/csv"),
  "export csv",
  `content type ${csv.response.headers.get("content-type")}`,
);
log("export csv", `${rows.length} rows`);

console.log("all flows passed");
