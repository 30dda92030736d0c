vcl 4.1;
# Varnish as a cache in front of the fake Picsum: one of the benchmark's references. malloc
# storage, grace on, every thread on the one CPU the benchmark gives it. Placeholders in {{...}}
# are filled by bench/lib/servers.ts.

# Picsum's API (/{w}/{h}, answered with a 302) and its image host, where the 302 points.
backend api { .host = "127.0.0.1"; .port = "{{API_PORT}}"; }
backend images { .host = "127.0.0.1"; .port = "{{IMAGE_PORT}}"; }

sub vcl_recv {
  if (req.url !~ "^/image(\?|$)") {
    return (synth(404));
  }
  # The same defaults as the service: /image is 1200x1200. The key is /{w}/{h}.
  set req.http.x-width = "1200";
  set req.http.x-height = "1200";
  if (req.url ~ "[?&]width=[0-9]+") {
    set req.http.x-width = regsub(req.url, ".*[?&]width=([0-9]+).*", "\1");
  }
  if (req.url ~ "[?&]height=[0-9]+") {
    set req.http.x-height = regsub(req.url, ".*[?&]height=([0-9]+).*", "\1");
  }
  set req.url = "/" + req.http.x-width + "/" + req.http.x-height;
  unset req.http.x-width;
  unset req.http.x-height;
  unset req.http.cookie;
  set req.backend_hint = api;
  return (hash);
}

sub vcl_backend_fetch {
  if (bereq.retries > 0) {
    set bereq.backend = images;
  }
}

sub vcl_backend_response {
  # Varnish does not follow redirects: the 302's target is fetched, and cached, under the key
  # of the original request.
  if (beresp.status == 302 && bereq.retries == 0) {
    set bereq.url = regsub(beresp.http.location, "^https?://[^/]+", "");
    return (retry);
  }
  unset beresp.http.set-cookie;
  unset beresp.http.cache-control;
  set beresp.ttl = 1h;
  set beresp.grace = 1h;
}
