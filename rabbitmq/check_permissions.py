"""Checks the private RabbitMQ instance against what rabbitmq/README.md promises.

Run through `bin/broker check rabbitmq`, which starts nothing: it needs a running instance and
the variables printed by `bin/broker env rabbitmq`. Each case is one line in CASES: who does
what, and whether the broker must allow or refuse it. A case that does not behave as expected
is printed as FAIL and makes the exit status 1.
"""

import os
import ssl
import sys
import urllib.parse
import uuid

import pika
import pika.exceptions

ALLOW, REFUSE = "allow", "refuse"
RUN = uuid.uuid4().hex[:8]  # unique queue names, so reruns do not see each other's leftovers
NODE_QUEUE = f"baton.node.check-{RUN}"
REPLY_QUEUE = f"baton.reply.check-{RUN}"


def params(url, ca=None, cert=None, key=None, external=False):
    parts = urllib.parse.urlsplit(url)
    kwargs = dict(
        host=parts.hostname,
        port=parts.port,
        virtual_host=urllib.parse.unquote(parts.path.lstrip("/")),
        connection_attempts=1,
        socket_timeout=5,
        blocked_connection_timeout=5,
    )
    if external:
        kwargs["credentials"] = pika.credentials.ExternalCredentials()
    else:
        kwargs["credentials"] = pika.PlainCredentials(parts.username, parts.password)
    if parts.scheme == "amqps":
        context = ssl.create_default_context(cafile=ca)
        if cert:
            context.load_cert_chain(cert, key)
        kwargs["ssl_options"] = pika.SSLOptions(context, server_hostname=parts.hostname)
    return pika.ConnectionParameters(**kwargs)


CONNECTIONS = {}


def channel(user):
    """A fresh channel on the user's connection: a refused operation closes its channel only."""
    if user not in CONNECTIONS or not CONNECTIONS[user].is_open:
        url = os.environ[f"BATON_RABBITMQ_{user.upper()}_URL"]
        CONNECTIONS[user] = pika.BlockingConnection(params(url))
    ch = CONNECTIONS[user].channel()
    ch.confirm_delivery()
    return ch


def publish(exchange, routing_key):
    def act(ch):
        ch.basic_publish(exchange, routing_key, b"check", pika.BasicProperties(expiration="60000"))

    return act


def declare_queue(name, exclusive=False):
    return lambda ch: ch.queue_declare(name, exclusive=exclusive, auto_delete=exclusive)


def declare_exchange(name, passive=False):
    return lambda ch: ch.exchange_declare(name, "topic", passive=passive, durable=True)


def bind(queue, exchange, key):
    return lambda ch: ch.queue_bind(queue, exchange, key)


def consume(queue):
    return lambda ch: ch.basic_consume(queue, lambda *args: None, auto_ack=True)


def consume_stream(queue):
    # A stream is consumed with manual acks, a prefetch and an offset; from "next", so that
    # nothing is left unacked when the channel closes (a stream refuses the implied nack).
    def act(ch):
        ch.basic_qos(prefetch_count=16)
        ch.basic_consume(
            queue,
            lambda channel, method, _properties, _body: channel.basic_ack(method.delivery_tag),
            auto_ack=False,
            arguments={"x-stream-offset": "next"},
        )

    return act


def declare_stream(name):
    return lambda ch: ch.queue_declare(name, durable=True, arguments={"x-queue-type": "stream"})


CASES = [
    # user, what, action, expected
    ("node", f"declare its queue {NODE_QUEUE}", declare_queue(NODE_QUEUE), ALLOW),
    ("node", "bind its queue to baton.broadcast", bind(NODE_QUEUE, "baton.broadcast", "agent.rpcutil"), ALLOW),
    ("node", "consume from its queue", consume(NODE_QUEUE), ALLOW),
    ("node", "declare dc1.node.check (another collective)", declare_queue(f"dc1.node.check-{RUN}"), ALLOW),
    ("node", "publish to baton.registration", publish("baton.registration", "node.check"), ALLOW),
    ("node", "publish a reply via the default exchange", publish("", REPLY_QUEUE), ALLOW),
    ("node", "declare baton.broadcast passively", declare_exchange("baton.broadcast", passive=True), ALLOW),
    ("node", "publish to baton.broadcast", publish("baton.broadcast", "agent.rpcutil"), REFUSE),
    ("node", "publish to dc1.broadcast", publish("dc1.broadcast", "agent.rpcutil"), REFUSE),
    ("node", "(re)declare baton.broadcast", declare_exchange("baton.broadcast"), REFUSE),
    ("node", "declare a client reply queue", declare_queue(f"baton.reply.check-{RUN}-n"), REFUSE),
    ("node", "declare a server-named queue", declare_queue("", exclusive=True), REFUSE),
    ("node", "bind its queue to baton.registration", bind(NODE_QUEUE, "baton.registration", "#"), REFUSE),
    ("node", "publish to baton.events", publish("baton.events", "rollout.check.started"), REFUSE),
    ("client", f"declare its reply queue {REPLY_QUEUE}", declare_queue(REPLY_QUEUE), ALLOW),
    ("client", "consume from its reply queue", consume(REPLY_QUEUE), ALLOW),
    ("client", "consume from direct reply-to", consume("amq.rabbitmq.reply-to"), ALLOW),
    ("client", "bind its reply queue to baton.registration", bind(REPLY_QUEUE, "baton.registration", "#"), ALLOW),
    ("client", "publish to baton.broadcast", publish("baton.broadcast", "agent.rpcutil"), ALLOW),
    ("client", "publish to dc1.broadcast", publish("dc1.broadcast", "agent.rpcutil"), ALLOW),
    ("client", "publish a rollout's events to baton.events", publish("baton.events", "rollout.check.started"), ALLOW),
    ("client", "bind its reply queue to baton.events (follow rollouts)", bind(REPLY_QUEUE, "baton.events", "rollout.#"), ALLOW),
    ("client", "publish a directed request via the default exchange", publish("", NODE_QUEUE), ALLOW),
    ("client", "publish to baton.registration", publish("baton.registration", "node.fake"), REFUSE),
    ("client", "read the registry stream baton.registration", consume_stream("baton.registration"), ALLOW),
    ("client", "append an end-of-read marker to the registry stream", publish("", "baton.registration"), ALLOW),
    ("client", "(re)declare the registry stream", declare_stream("baton.registration"), REFUSE),
    ("node", "read the registry stream baton.registration", consume_stream("baton.registration"), REFUSE),
    ("client", "read the events stream baton.events (resume elsewhere)", consume_stream("baton.events"), ALLOW),
    ("client", "append an end-of-read marker to the events stream", publish("", "baton.events"), ALLOW),
    ("client", "(re)declare the events stream", declare_stream("baton.events"), REFUSE),
    ("node", "read the events stream baton.events", consume_stream("baton.events"), REFUSE),
    ("client", "hold a rollout's lock (exclusive queue)", declare_queue(f"baton.reply.rollout-check-{RUN}", exclusive=True), ALLOW),
    ("client", "declare a node queue", declare_queue(f"baton.node.check-{RUN}-c"), REFUSE),
    ("client", "consume from a node queue", consume(NODE_QUEUE), REFUSE),
    ("client", "bind its reply queue to baton.broadcast", bind(REPLY_QUEUE, "baton.broadcast", "#"), REFUSE),
    ("client", "declare a server-named queue", declare_queue("", exclusive=True), REFUSE),
    ("client", "declare an exchange", declare_exchange(f"baton.reply.check-{RUN}"), ALLOW),
    ("admin", "declare an exchange", declare_exchange(f"check-{RUN}"), ALLOW),
]


def run_case(user, what, action, expected):
    try:
        ch = channel(user)
        action(ch)
        outcome = ALLOW
        ch.close()
    except pika.exceptions.ChannelClosedByBroker as error:
        outcome = REFUSE if error.reply_code == 403 else f"error {error.reply_code} {error.reply_text}"
    return outcome


def check_tls(what, expect_ok, **kwargs):
    try:
        pika.BlockingConnection(params(**kwargs)).close()
        outcome = True
    except (pika.exceptions.AMQPConnectionError, ssl.SSLError, OSError):
        outcome = False
    return report(f"tls: {what}", expect_ok, outcome)


def report(label, expected, outcome):
    good = expected == outcome
    print(f"{'ok  ' if good else 'FAIL'} {label}: expected {expected}, got {outcome}")
    return good


def main():
    env = os.environ
    results = []
    for user, what, action, expected in CASES:
        results.append(report(f"{user}: {what}", expected, run_case(user, what, action, expected)))

    # A broadcast request reaches the bound node queue; a directed one too (2 messages).
    ch = channel("admin")
    depth = ch.queue_declare(NODE_QUEUE, passive=True).method.message_count
    results.append(report("routing: client requests reached the node queue", 2, depth))

    tls = env["BATON_RABBITMQ_CLIENT_TLS_URL"]
    results += [
        check_tls("client password login, server checked against ca.pem", True, url=tls, ca=env["BATON_TLS_CA"]),
        check_tls("server refused when trusting only other-ca.pem", False, url=tls, ca=env["BATON_TLS_OTHER_CA"]),
        check_tls(
            "client certificate from ca.pem accepted",
            True,
            url=tls,
            ca=env["BATON_TLS_CA"],
            cert=env["BATON_TLS_CLIENT_CERT"],
            key=env["BATON_TLS_CLIENT_KEY"],
        ),
        check_tls(
            "client certificate from other-ca.pem refused",
            False,
            url=tls,
            ca=env["BATON_TLS_CA"],
            cert=env["BATON_TLS_OTHER_CLIENT_CERT"],
            key=env["BATON_TLS_OTHER_CLIENT_KEY"],
        ),
        check_tls(
            "EXTERNAL login as CN=baton-client",
            True,
            url=tls,
            ca=env["BATON_TLS_CA"],
            cert=env["BATON_TLS_CLIENT_CERT"],
            key=env["BATON_TLS_CLIENT_KEY"],
            external=True,
        ),
    ]
    bad_password = env["BATON_RABBITMQ_CLIENT_URL"].replace("baton-client:", "baton-client:wrong", 1)
    results.append(check_tls_plain("wrong password refused", bad_password))

    cleanup = channel("admin")
    for queue in (NODE_QUEUE, REPLY_QUEUE, f"dc1.node.check-{RUN}"):
        cleanup.queue_delete(queue)
    cleanup.exchange_delete(f"check-{RUN}")
    cleanup.exchange_delete(f"baton.reply.check-{RUN}")
    for connection in CONNECTIONS.values():
        if connection.is_open:
            connection.close()

    failed = results.count(False)
    print(f"permissions: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


def check_tls_plain(what, url):
    try:
        pika.BlockingConnection(params(url)).close()
        outcome = True
    except pika.exceptions.AMQPConnectionError:
        outcome = False
    return report(f"auth: {what}", False, outcome)


if __name__ == "__main__":
    sys.exit(main())
