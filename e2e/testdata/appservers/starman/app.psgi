# The conformance echo app as a plain PSGI application, served by Starman.
# PSGI exposes no request trailers and cannot send response trailers, and
# Starman has no WebSocket support of its own: the test knows, and
# /trailers sends its body without the trailer.
# Run: starman --listen 127.0.0.1:PORT --workers 4 app.psgi
use strict;
use warnings;
use Digest::SHA ();
use Time::HiRes ();

my $NAME  = 'starman';
my $FIXED = '0123456789abcdef' x 64;

sub json_str {
    my ($s) = @_;
    $s =~ s/(["\\])/\\$1/g;
    $s =~ s/([\x00-\x1f\x7f-\xff])/sprintf('\\u%04x', ord($1))/ge;
    return qq("$s");
}

# PSGI keeps no header names as sent, nor their order: HTTP_X_FOO is
# X-Foo, CONTENT_LENGTH and CONTENT_TYPE come without the HTTP_ prefix,
# and repeated headers arrive joined with ", ".
sub headers_of {
    my ($env) = @_;
    my @out;
    for my $k (sort keys %$env) {
        my $name;
        if ($k =~ /^HTTP_(.*)$/) { $name = $1 }
        elsif ($k eq 'CONTENT_LENGTH' || $k eq 'CONTENT_TYPE') { $name = $k }
        else { next }
        next if !defined $env->{$k} || $env->{$k} eq '';
        $name = join '-', map { ucfirst lc } split /_/, $name;
        push @out, '[' . json_str($name) . ',' . json_str($env->{$k}) . ']';
    }
    return '[' . join(',', @out) . ']';
}

sub echo {
    my ($env, $delay) = @_;
    Time::HiRes::sleep($delay) if $delay;
    my $sha = Digest::SHA->new(256);
    my $n   = 0;
    my $in  = $env->{'psgi.input'};
    while (1) {
        my $got = $in->read(my $buf, 65536);
        last if !$got;
        $sha->add($buf);
        $n += $got;
    }
    my $body = '{"server":' . json_str($NAME) . ',"method":' . json_str($env->{REQUEST_METHOD})
      . ',"target":' . json_str($env->{REQUEST_URI}) . ',"headers":' . headers_of($env)
      . ',"body_len":' . $n . ',"body_sha256":' . json_str($sha->hexdigest) . ',"trailers":null}';
    return [200, ['Content-Type' => 'application/json', 'Content-Length' => length($body), 'X-Backend' => $NAME], [$body]];
}

my $app = sub {
    my ($env) = @_;
    my $path = $env->{PATH_INFO};
    return [200, ['Content-Type' => 'text/plain', 'Content-Length' => 2], ['ok']] if $path eq '/healthz';
    return echo($env, 0) if $path eq '/echo';
    return echo($env, 0.3) if $path eq '/slow';
    if ($path eq '/fixed') {
        # The body goes out for HEAD too, as from any bare PSGI app (only
        # Plack::Middleware::Head strips it): Starman sends it, so a HEAD
        # answer here is followed by 1024 bytes on the wire that are no part
        # of any answer. The gateway must keep them from the client and from
        # the next request on the connection.
        return [200, ['Content-Type' => 'text/plain', 'Content-Length' => length($FIXED), 'X-Backend' => $NAME,
                      'Set-Cookie' => 'a=1; Path=/', 'Set-Cookie' => 'b=2; Path=/'], [$FIXED]];
    }
    return [204, ['X-Backend' => $NAME, 'X-Empty' => '1'], []] if $path eq '/empty';
    if ($path eq '/notmod') {
        my $inm = $env->{HTTP_IF_NONE_MATCH} // '';
        return [304, ['ETag' => '"v1"', 'X-Backend' => $NAME], []] if $inm eq '"v1"';
        return [200, ['ETag' => '"v1"', 'Content-Type' => 'text/plain', 'Content-Length' => 6, 'X-Backend' => $NAME], ["fresh\n"]];
    }
    if ($path eq '/trailers' || $path eq '/stream') {
        my $sse = $path eq '/stream';
        return sub {
            my ($respond) = @_;
            my $w = $respond->([200, $sse
                ? ['Content-Type' => 'text/event-stream', 'Cache-Control' => 'no-cache']
                : ['Content-Type' => 'text/plain', 'X-Backend' => $NAME]]);
            for my $i (0 .. ($sse ? 3 : 2)) {
                if ($sse) {
                    Time::HiRes::sleep(0.25) if $i;
                    $w->write("data: event $i\n\n");
                } else {
                    $w->write("chunk-$i\n");
                    Time::HiRes::sleep(0.02);
                }
            }
            $w->close;
        };
    }
    return [404, ['Content-Type' => 'text/plain', 'X-Backend' => $NAME], ["not found\n"]];
};

$app;
