"""Checks the private RabbitMQ instance against what rabbitmq/README.md promises.

Run through `bin/broker check rabbitmq`, which starts nothing: it needs a running instance and
the variables printed by `bin/broker env rabbitmq`. Each case is one line in CASES: who does
what, and whether the broker must allow or refuse it. A case that does not behave as expected
is printed as FAIL and makes the exit status 1.

The federation user of two sites (rabbitmq/federation/README.md) exists on this instance, site
A, once `bin/broker start rabbitmq-site2` has run; `bin/broker check rabbitmq` then also sets
BATON_RABBITMQ_FEDERATION_URL and BATON_SITE2_COLLECTIVE, and FEDERATION_CASES are checked too.
Without them those cases are listed as skipped, with the reason.
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


# The federation user (rabbitmq/federation/README.md, "The federation user"), for the site
# collective C: only the links' own objects (`federation: C.…`) and the twins of C's node and
# reply queues; never a publish to C.broadcast, a queue, the registration exchange, nor anything
# of another collective.
SITE = os.environ.get("BATON_SITE2_COLLECTIVE", "dc2")
LINK_QUEUE = f"federation: {SITE}.broadcast -> check-{RUN}"
LINK_EXCHANGE = f"federation: {SITE}.broadcast -> check-{RUN} A"
SITE_NODE_QUEUE = f"{SITE}.node.check-{RUN}"
SITE_REPLY_QUEUE = f"{SITE}.reply.check-{RUN}"
FEDERATION_CASES = [
    ("federation", f"declare a link's queue '{LINK_QUEUE}'", declare_queue(LINK_QUEUE), ALLOW),
    ("federation", f"bind it to {SITE}.broadcast", bind(LINK_QUEUE, f"{SITE}.broadcast", "agent.rpcutil"), ALLOW),
    ("federation", "consume from it", consume(LINK_QUEUE), ALLOW),
    ("federation", f"declare a link's exchange '{LINK_EXCHANGE}'", declare_exchange(LINK_EXCHANGE), ALLOW),
    # What the links need (configure and write on `federation: C.…`) lets the user bind a link's
    # queue to an exchange of its own and publish there: the link then carries the message to
    # the other site's C.broadcast (seen with the real link's queue, 2026-12-03; the links' own
    # exchanges are internal and refuse a publish, this one is not). RabbitMQ's permissions
    # cannot tell that apart from what a link does; only a request with a valid signature runs
    # at the other site (docs/SECURITY.md).
    ("federation", "bind a link's queue to an exchange of its own", bind(LINK_QUEUE, LINK_EXCHANGE, "#"), ALLOW),
    ("federation", "publish to it (a link would carry it to the other site)", publish(LINK_EXCHANGE, "agent.rpcutil"), ALLOW),
    ("federation", f"declare a node queue's twin {SITE_NODE_QUEUE}", declare_queue(SITE_NODE_QUEUE), ALLOW),
    ("federation", "consume from the node queue's twin", consume(SITE_NODE_QUEUE), ALLOW),
    ("federation", f"declare a reply queue's twin {SITE_REPLY_QUEUE}", declare_queue(SITE_REPLY_QUEUE), ALLOW),
    ("federation", "consume from the reply queue's twin", consume(SITE_REPLY_QUEUE), ALLOW),
    # The read pattern names the exchange C.registration; the registry stream has the same name
    # (RabbitMQ's permissions cannot tell them apart): it holds the registrations the link
    # carries anyway.
    ("federation", f"read the registry stream {SITE}.registration", consume_stream(f"{SITE}.registration"), ALLOW),
    ("federation", f"publish to {SITE}.broadcast", publish(f"{SITE}.broadcast", "agent.rpcutil"), REFUSE),
    ("federation", "publish a directed request via the default exchange", publish("", SITE_NODE_QUEUE), REFUSE),
    ("federation", f"publish to {SITE}.registration (a forged registration)", publish(f"{SITE}.registration", "node.fake"), REFUSE),
    ("federation", f"publish to {SITE}.events", publish(f"{SITE}.events", "rollout.check.started"), REFUSE),
    ("federation", f"bind the node queue's twin to {SITE}.broadcast", bind(SITE_NODE_QUEUE, f"{SITE}.broadcast", "#"), REFUSE),
    ("federation", f"declare a node's claim queue {SITE_NODE_QUEUE}:claim", declare_queue(f"{SITE_NODE_QUEUE}:claim"), REFUSE),
    ("federation", f"(re)declare {SITE}.broadcast", declare_exchange(f"{SITE}.broadcast"), REFUSE),
    ("federation", "declare a link's queue for baton.broadcast", declare_queue(f"federation: baton.broadcast -> check-{RUN}"), REFUSE),
    ("federation", "bind a link's queue to baton.broadcast", bind(LINK_QUEUE, "baton.broadcast", "#"), REFUSE),
    ("federation", "declare a node queue of another collective", declare_queue(f"baton.node.check-{RUN}-f"), REFUSE),
    ("federation", f"consume from a node queue of another collective ({NODE_QUEUE})", consume(NODE_QUEUE), REFUSE),
    ("federation", f"consume from a client's reply queue of another collective ({REPLY_QUEUE})", consume(REPLY_QUEUE), REFUSE),
    ("federation", "read the registry stream baton.registration", consume_stream("baton.registration"), REFUSE),
    ("federation", "publish to baton.broadcast", publish("baton.broadcast", "agent.rpcutil"), REFUSE),
    ("federation", "declare a server-named queue", declare_queue("", exclusive=True), REFUSE),
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
    if "BATON_RABBITMQ_FEDERATION_URL" in env:
        for user, what, action, expected in FEDERATION_CASES:
            results.append(report(f"{user}: {what}", expected, run_case(user, what, action, expected)))
    else:
        print(
            f"skip the {len(FEDERATION_CASES)} cases of the federation user: it does not exist here until "
            "bin/broker start rabbitmq-site2 creates it"
        )

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
    for queue in (NODE_QUEUE, REPLY_QUEUE, f"dc1.node.check-{RUN}", LINK_QUEUE, SITE_NODE_QUEUE, SITE_REPLY_QUEUE):
        cleanup.queue_delete(queue)
    for exchange in (f"check-{RUN}", f"baton.reply.check-{RUN}", LINK_EXCHANGE):
        cleanup.exchange_delete(exchange)
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
