# Sourced by the tests that run nginx (tests/shim/apps_test.sh, many_programs_test.sh,
# tests/robust/robust_test.sh); needs $work.
#
# nginx_conf NAME LISTEN WORKERS: writes $work/NAME.conf, nginx serving $work/www on LISTEN with
# WORKERS workers, daemon on, its pid file and error log beside the conf and every temp path in
# $work, so that a run leaves nothing elsewhere.
nginx_conf() {
  cat >"$work/$1.conf" <<CONF
daemon on;
worker_processes $3;
pid $work/$1.pid;
error_log $work/$1.error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work;
  uwsgi_temp_path $work; scgi_temp_path $work;
  server { listen $2; root $work/www; }
}
CONF
}
