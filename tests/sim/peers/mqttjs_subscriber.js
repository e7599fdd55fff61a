// A durable MQTT.js subscriber for the Ivanti broker tests: connects over mutual TLS 1.2 with
// MQTT 3.1.1, clean session off, subscribes at QoS 1 and prints one JSON line per event on
// standard output. Ends (DISCONNECT) when standard input closes.
// Settings come from the environment: MQTTJS_MODULE (path of the mqtt package), MQTT_HOST,
// MQTT_PORT, MQTT_CLIENT_ID, MQTT_TOPIC, MQTT_CA, MQTT_CERT, MQTT_KEY, MQTT_USERNAME (optional).
"use strict";
const fs = require("fs");
const mqtt = require(process.env.MQTTJS_MODULE);
const env = process.env;
const say = (record) => process.stdout.write(JSON.stringify(record) + "\n");

const client = mqtt.connect({
  host: env.MQTT_HOST,
  port: Number(env.MQTT_PORT),
  protocol: "mqtts",
  protocolVersion: 4,
  clientId: env.MQTT_CLIENT_ID,
  clean: false,
  keepalive: 30,
  reconnectPeriod: 0,
  username: env.MQTT_USERNAME || undefined,
  ca: fs.readFileSync(env.MQTT_CA),
  cert: fs.readFileSync(env.MQTT_CERT),
  key: fs.readFileSync(env.MQTT_KEY),
  minVersion: "TLSv1.2",
  maxVersion: "TLSv1.2",
  rejectUnauthorized: true,
});

client.on("connect", (connack) => {
  say({ event: "connect", sessionPresent: connack.sessionPresent });
  client.subscribe(env.MQTT_TOPIC, { qos: 1 }, (err, granted) => {
    say({ event: "suback", error: err ? String(err) : null, granted: granted || [] });
  });
});
client.on("message", (topic, payload, packet) => {
  say({
    event: "message",
    topic,
    payload: payload.toString("base64"),
    dup: packet.dup,
    qos: packet.qos,
    retain: packet.retain,
  });
});
client.on("error", (err) => say({ event: "error", message: String(err) }));
client.on("close", () => say({ event: "close" }));
process.stdin.on("end", () => client.end(false, {}, () => process.exit(0)));
process.stdin.resume();
