// Drive the official Pelion JavaScript SDK (mbed-cloud-sdk 2.6.10 from npm, installed under
// .peers/node by .ci/install-peers) against a simulator.
//
//   NODE_PATH=.peers/node/node_modules NODE_EXTRA_CA_CERTS=ca.pem node pelion_sdk.js pull|callback
//
// with CONFORMANCE_PELION_API_URL, CONFORMANCE_PELION_API_KEY, CONFORMANCE_SUT_CERT_FILE,
// CONFORMANCE_SUT_KEY_FILE and PELION_DEVICE (a registered device whose text/plain counter
// /3200/0/5501 changes on its own) in the environment. Prints one JSON object of what it saw.
//
// pull: subscribe (its notifications start long polling after GET /v2/notification/callback
// answers 404), receive a notification, read /3/0/0 through a device request and its async
// response, stop (DELETE /v2/notification/pull). Run as its own process: the SDK's poll loop
// cannot be stopped and would poll again.
// callback: serve HTTPS, updateWebhook (answered after our verification PUT), receive a
// notification there (the subscription made by the pull phase is the key's, so it still
// holds), getWebhook, deleteWebhook.
// The SDK crashes on TLV payloads ("TlvParser is not a constructor"): only text/plain here.
"use strict";

const fs = require("fs");
const https = require("https");
const { ConnectApi } = require("mbed-cloud-sdk");

const env = process.env;
const DEVICE = env.PELION_DEVICE;
const OPTIONS = { apiKey: env.CONFORMANCE_PELION_API_KEY, host: env.CONFORMANCE_PELION_API_URL };
const TIMEOUT_MS = 20000;

function within(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function pull() {
  const connect = new ConnectApi({ ...OPTIONS, autostartNotifications: true });
  const notified = new Promise((resolve, reject) => {
    const onValue = (error, value) => (error ? reject(error) : resolve(value));
    connect.addResourceSubscription(DEVICE, "/3200/0/5501", onValue).catch(reject);
  });
  const value = await within(notified, "notification");
  const read = await within(connect.getResourceValue(DEVICE, "/3/0/0"), "async response");
  await connect.stopNotifications();
  return { pull_notification: String(value), pull_read: String(read) };
}

async function callback() {
  const connect = new ConnectApi({ ...OPTIONS, handleNotifications: true });
  const seen = { callback_headers: null, callback_bodies: 0 };
  const notified = new Promise((resolve) => {
    connect.on("notification", (n) => {
      if (n.id === DEVICE && n.path === "/3200/0/5501") resolve(n.payload);
    });
  });
  const tls = { cert: fs.readFileSync(env.CONFORMANCE_SUT_CERT_FILE), key: fs.readFileSync(env.CONFORMANCE_SUT_KEY_FILE) };
  const server = https.createServer(tls, (request, response) => {
    let body = "";
    request.on("data", (chunk) => { body += chunk; });
    request.on("end", () => {
      seen.callback_headers = seen.callback_headers || request.headers;
      const message = JSON.parse(body || "{}");
      if (Object.keys(message).length > 0) {
        seen.callback_bodies += 1;
        connect.notify(message);
      }
      response.writeHead(204);
      response.end();
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `https://127.0.0.1:${server.address().port}/pelion`;
  await connect.updateWebhook(url, { "x-callback-secret": "sdk-secret" });
  const hook = await connect.getWebhook();
  const value = await within(notified, "notification by callback");
  await connect.deleteWebhook();
  server.close();
  return { ...seen, webhook_url: hook.url, callback_notification: String(value) };
}

const phases = { pull, callback };
const phase = phases[process.argv[2]];
if (!phase) {
  console.error("usage: node pelion_sdk.js pull|callback");
  process.exit(2);
}
phase().then(
  (seen) => {
    console.log(JSON.stringify(seen));
    process.exit(0);
  },
  (error) => {
    console.error(error && error.stack ? error.stack : String(error));
    process.exit(1);
  },
);
