import { Module } from '@nestjs/common';
import { ImageModule } from '../image/image.module';
import { AdminController } from './admin.controller';
import { AdminTokenGuard } from './admin-token.guard';

/** `/admin/*`: refresh, purge and list the cache, behind `ADMIN_TOKEN`. */
@Module({
  imports: [ImageModule],
  controllers: [AdminController],
  providers: [AdminTokenGuard],
})
export class AdminModule {}
