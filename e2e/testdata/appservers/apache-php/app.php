<?php
// The conformance echo app for Apache httpd with mod_php: httpd.conf maps
// every path to this script. PHP exposes no request trailers and cannot
// send response trailers, and mod_php has no WebSocket support: the test
// knows, and /trailers sends its body without the trailer.
$NAME = 'apache-php';
$FIXED = str_repeat('0123456789abcdef', 64);
$uri = $_SERVER['REQUEST_URI'];
$path = parse_url($uri, PHP_URL_PATH);

function echo_request($delay) {
    global $NAME, $uri;
    if ($delay > 0) {
        usleep((int)($delay * 1000000));
    }
    $ctx = hash_init('sha256');
    $n = 0;
    $in = fopen('php://input', 'rb');
    while (!feof($in)) {
        $buf = fread($in, 65536);
        if ($buf === false || $buf === '') {
            break;
        }
        hash_update($ctx, $buf);
        $n += strlen($buf);
    }
    fclose($in);
    // getallheaders() gives the headers in arrival order with the names as
    // sent; Apache joins repeated headers with ", ".
    $headers = [];
    foreach (getallheaders() as $k => $v) {
        $headers[] = [$k, $v];
    }
    $body = json_encode([
        'server' => $NAME, 'method' => $_SERVER['REQUEST_METHOD'], 'target' => $uri,
        'headers' => $headers, 'body_len' => $n, 'body_sha256' => hash_final($ctx), 'trailers' => null,
    ], JSON_UNESCAPED_SLASHES);
    header('Content-Type: application/json');
    header('Content-Length: ' . strlen($body));
    header("X-Backend: $NAME");
    echo $body;
}

switch ($path) {
case '/healthz':
    header('Content-Type: text/plain');
    echo 'ok';
    break;
case '/echo':
    echo_request(0);
    break;
case '/slow':
    echo_request(0.3);
    break;
case '/fixed':
    header('Content-Type: text/plain');
    header('Content-Length: ' . strlen($FIXED));
    header("X-Backend: $NAME");
    header('Set-Cookie: a=1; Path=/', false);
    header('Set-Cookie: b=2; Path=/', false);
    echo $FIXED;
    break;
case '/empty':
    http_response_code(204);
    header("X-Backend: $NAME");
    header('X-Empty: 1');
    break;
case '/notmod':
    header('ETag: "v1"');
    header("X-Backend: $NAME");
    if (($_SERVER['HTTP_IF_NONE_MATCH'] ?? '') === '"v1"') {
        http_response_code(304);
        break;
    }
    header('Content-Type: text/plain');
    header('Content-Length: 6');
    echo "fresh\n";
    break;
case '/trailers':
    header('Content-Type: text/plain');
    header("X-Backend: $NAME");
    for ($i = 0; $i < 3; $i++) {
        echo "chunk-$i\n";
        flush();
        usleep(20000);
    }
    break;
case '/stream':
    header('Content-Type: text/event-stream');
    header('Cache-Control: no-cache');
    for ($i = 0; $i < 4; $i++) {
        if ($i > 0) {
            usleep(250000);
        }
        echo "data: event $i\n\n";
        flush();
    }
    break;
default:
    http_response_code(404);
    header('Content-Type: text/plain');
    header("X-Backend: $NAME");
    echo "not found\n";
}
